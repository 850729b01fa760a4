//! The crate's layers, read from its sources: no import cycle between the
//! modules of `src/`, and no module importing a layer above its own.
//!
//! A module's imports are the paths its code names that start at `crate::`,
//! `super::`, `self::` or one of its own child modules: in `use` lines
//! (grouped ones too, `use crate::a::{b, c::d}`) and inline (`super::foo(`).
//! Each resolves to the deepest module (file) it names. Comments, string
//! literals, macro names (`crate::impl_managed!`) and everything under
//! `#[cfg(test)]` are not read.
//!
//! The rules:
//! - no cycle: no module reaches itself through its imports;
//! - a module never imports a module it is part of (its folder's `mod.rs`,
//!   or the crate root): a folder's `mod.rs` sits on top of the folder;
//! - in a folder that declares its layers ([`LAYERS`], bottom first), a
//!   module imports only from layers below its own: not from a higher one,
//!   and not from another entry of its own layer.
//!
//! `src/main.rs` is a crate of its own: it reaches the library as `dbops::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of each folder (a module path, `""` for `src/`), bottom first.
/// Every module directly in a listed folder must be in its list.
const LAYERS: &[(&str, &[&[&str]])] = &[
    (
        "",
        &[
            &["api"],
            &["metrics", "crdgen"],
            &["providers"],
            &["emulator", "controllers"],
            &["uninstall", "operator", "fuzzing"],
        ],
    ),
    ("providers", &[&["base"], &["clients"], &["registry"]]),
    (
        "providers::clients",
        &[
            &["capydb", "db9", "infrai", "postgres", "supabase"],
            // infrai's BYOK module is built on the infrai client.
            &["infrai_byok"],
        ],
    ),
    ("emulator", &[&["base"], &["vendors"]]),
    (
        "emulator::vendors",
        &[
            &["capydb", "db9", "infrai_byok", "supabase"],
            // The infrai emulator mounts its BYOK module.
            &["infrai"],
        ],
    ),
    (
        "controllers",
        &[
            &["runtime"],
            &["secret", "protection"],
            &["pipeline"],
            &["kinds"],
        ],
    ),
    (
        "controllers::kinds",
        &[
            &["expiry", "rollout", "preview_data"],
            // A project's or branch's deletion waits for its roles; a
            // branch's reset applies spec.data again.
            &["role", "reset"],
            &[
                "project", "branch", "snapshot", "byok", "provider", "schedule",
            ],
        ],
    ),
];

#[test]
fn no_import_cycle_and_no_upward_import() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crate_modules = read_crate(&src);
    let problems = check(&crate_modules, LAYERS);
    assert!(
        problems.is_empty(),
        "{} layering problem(s) in src/:\n\n{}\n",
        problems.len(),
        problems.join("\n\n")
    );
}

/// One module of the crate: its path (`["controllers", "runtime"]`), its file
/// (relative to the crate) and its source.
struct Module {
    path: Vec<String>,
    file: String,
    source: String,
}

/// An import: from a module, at a line of its file, the path as written, and
/// the module it resolves to.
#[derive(Clone, Debug)]
struct Import {
    line: usize,
    written: String,
    target: Vec<String>,
}

/// Every module of the library under `src`.
fn read_crate(src: &Path) -> Vec<Module> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let root = src.parent().unwrap_or(src);
    files
        .into_iter()
        .filter(|f| f != &src.join("main.rs"))
        .map(|file| {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                path.pop();
            }
            Module {
                path,
                file: file
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                source: std::fs::read_to_string(&file).unwrap(),
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

/// Every problem with `modules` and `layers`, each a message that names the
/// file, the line and the import.
fn check(modules: &[Module], layers: &[(&str, &[&[&str]])]) -> Vec<String> {
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<Vec<String>, Vec<(Import, &Module)>> = BTreeMap::new();
    for module in modules {
        let imports = imports_of(&module.source, &module.path, &known);
        for import in imports {
            if let Some(problem) = layer_problem(module, &import, layers) {
                problems.push(problem);
            }
            graph
                .entry(module.path.clone())
                .or_default()
                .push((import, module));
        }
    }
    problems.extend(listing_problems(&known, layers));
    for component in cycles(&graph, &known) {
        problems.push(cycle_problem(&component, &graph));
    }
    problems
}

/// An import and the module whose file makes it.
type ImportAt<'a> = (&'a Import, &'a Module);

/// The message for modules on cycles together (`component`): the shortest
/// cycle among them, each step with the first import that makes it.
fn cycle_problem(
    component: &[Vec<String>],
    graph: &BTreeMap<Vec<String>, Vec<(Import, &Module)>>,
) -> String {
    let members: BTreeSet<&Vec<String>> = component.iter().collect();
    // The first import of each step between two members.
    let mut steps: BTreeMap<(&Vec<String>, &Vec<String>), ImportAt> = BTreeMap::new();
    for from in component {
        for (import, module) in graph.get(from).into_iter().flatten() {
            if let Some(to) = members.get(&import.target)
                && *to != from
            {
                steps.entry((from, to)).or_insert((import, module));
            }
        }
    }
    // The shortest cycle: a breadth-first search from each member back to it.
    let mut shortest: Option<Vec<&Vec<String>>> = None;
    for start in component {
        let mut previous: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut found = None;
        while let Some(at) = queue.pop_front() {
            for (_, to) in steps.keys().filter(|(from, _)| *from == at) {
                if *to == start {
                    found = Some(at);
                    break;
                }
                if !previous.contains_key(to) {
                    previous.insert(to, at);
                    queue.push_back(to);
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(mut at) = found {
            let mut cycle = vec![start];
            while at != start {
                cycle.insert(1, at);
                at = previous[at];
            }
            cycle.push(start);
            if shortest.as_ref().is_none_or(|s| cycle.len() < s.len()) {
                shortest = Some(cycle);
            }
        }
    }
    let cycle = shortest.unwrap_or_default();
    let mut message = format!(
        "import cycle: {}",
        cycle
            .iter()
            .map(|m| show(m))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    for pair in cycle.windows(2) {
        if let Some((import, module)) = steps.get(&(pair[0], pair[1])) {
            message.push_str(&format!(
                "\n  {}:{}: `{}` imports {}",
                module.file,
                import.line,
                import.written,
                show(&import.target)
            ));
        }
    }
    if component.len() + 1 > cycle.len() {
        message.push_str(&format!(
            "\n  ({} modules are on cycles together: {})",
            component.len(),
            component
                .iter()
                .map(|m| show(m))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    message
}

/// What is wrong with `import` of `module`, if anything: an import of a
/// module it is part of, or of a layer not below its own.
fn layer_problem(
    module: &Module,
    import: &Import,
    layers: &[(&str, &[&[&str]])],
) -> Option<String> {
    let from = &module.path;
    let to = &import.target;
    let at = format!("{}:{}: `{}`", module.file, import.line, import.written);
    if from.starts_with(to) {
        return Some(format!(
            "{at} imports {}, which {} is part of: a folder's mod.rs sits on top of the folder, so \
             import the module that defines the item instead",
            show(to),
            show(from)
        ));
    }
    if to.starts_with(from) {
        return None;
    }
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let folder = from[..common].join("::");
    let (_, order) = layers.iter().find(|(name, _)| *name == folder)?;
    let rank = |name: &str| order.iter().position(|layer| layer.contains(&name));
    let (mine, theirs) = (&from[common], &to[common]);
    let order_text = order
        .iter()
        .map(|layer| layer.join(", "))
        .collect::<Vec<_>>()
        .join(" < ");
    let folder_name = if folder.is_empty() { "src" } else { &folder };
    match (rank(mine), rank(theirs)) {
        (Some(a), Some(b)) if a > b => None,
        (Some(a), Some(b)) if a == b => Some(format!(
            "{at} imports {}, of the same layer as {} ({folder_name}: {order_text}); move what \
             both need to a layer below",
            show(to),
            show(from)
        )),
        (Some(_), Some(_)) => Some(format!(
            "{at} imports {}, a higher layer than {} ({folder_name}: {order_text}); move what it \
             needs down, or the module up",
            show(to),
            show(from)
        )),
        // Modules missing from the list are reported once, by `listing_problems`.
        _ => None,
    }
}

/// Modules missing from the layers of a listed folder, and listed names
/// that are no module.
fn listing_problems(known: &BTreeSet<Vec<String>>, layers: &[(&str, &[&[&str]])]) -> Vec<String> {
    let mut problems = Vec::new();
    for (folder, order) in layers {
        let folder_path: Vec<String> = folder
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let children: BTreeSet<&str> = known
            .iter()
            .filter(|m| m.len() == folder_path.len() + 1 && m.starts_with(&folder_path))
            .map(|m| m[folder_path.len()].as_str())
            .collect();
        let listed: BTreeSet<&str> = order.iter().flat_map(|l| l.iter().copied()).collect();
        let folder_name = if folder.is_empty() { "src" } else { folder };
        for missing in children.difference(&listed) {
            problems.push(format!(
                "module {missing} of {folder_name} is in none of its layers: add it to LAYERS in \
                 tests/layers.rs"
            ));
        }
        for gone in listed.difference(&children) {
            problems.push(format!(
                "LAYERS in tests/layers.rs lists {gone} in {folder_name}, which has no such module"
            ));
        }
    }
    problems
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(
    graph: &BTreeMap<Vec<String>, Vec<(Import, &Module)>>,
    known: &BTreeSet<Vec<String>>,
) -> Vec<Vec<Vec<String>>> {
    struct Tarjan<'a> {
        edges: BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let next: Vec<&Vec<String>> = self
                .edges
                .get(v)
                .map(|e| e.iter().copied().collect())
                .unwrap_or_default();
            for w in next {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for (from, imports) in graph {
        for (import, _) in imports {
            if let Some(to) = known.get(&import.target)
                && to != from
            {
                tarjan.edges.entry(from).or_default().insert(to);
            }
        }
    }
    for module in known {
        if !tarjan.index.contains_key(module) {
            tarjan.visit(module);
        }
    }
    tarjan.found
}

// ---------------------------------------------------------------------------
// Reading a source file: tokens, `#[cfg(test)]` items, inline modules, paths.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// The tokens of `source` with their lines, without comments, literals,
/// lifetimes and whitespace. `$crate` is `crate`.
fn tokens(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br".."
            let hashes = len - 2 - usize::from(c == 'b');
            i += len;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let start = if c == 'b' { i + 1 } else { i };
            if at(start + 1) == '\\' {
                // An escaped char literal: past the escaped char, up to
                // the closing quote.
                i = start + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(start + 2) == '\'' {
                i = start + 3;
            } else {
                // A lifetime or a label: skip the quote, the name follows.
                i = start + 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word = word.strip_prefix("r#").map(str::to_string).unwrap_or(word);
            out.push((Tok::Ident(word), line));
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric()
                || at(i) == '_'
                || at(i) == '.' && at(i + 1).is_ascii_digit()
            {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push((Tok::Path, line));
            i += 2;
        } else if c == '$' && chars[i + 1..].starts_with(&['c', 'r', 'a', 't', 'e']) {
            i += 1;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// The length of the raw string opening at `i` (`r"`, `r#"`, `br##"`...), if one does.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

/// `tokens` without the items under `#[cfg(test)]`.
fn without_tests(tokens: Vec<(Tok, usize)>) -> Vec<(Tok, usize)> {
    let ident = |t: &Tok, s: &str| matches!(t, Tok::Ident(w) if w == s);
    let is_cfg_test = |t: &[(Tok, usize)]| {
        t.len() >= 7
            && t[0].0 == Tok::Punct('#')
            && t[1].0 == Tok::Punct('[')
            && ident(&t[2].0, "cfg")
            && t[3].0 == Tok::Punct('(')
            && ident(&t[4].0, "test")
            && t[5].0 == Tok::Punct(')')
            && t[6].0 == Tok::Punct(']')
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !is_cfg_test(&tokens[i..]) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        // Further attributes of the same item.
        while i + 1 < tokens.len()
            && tokens[i].0 == Tok::Punct('#')
            && tokens[i + 1].0 == Tok::Punct('[')
        {
            let mut depth = 0;
            i += 1;
            while i < tokens.len() {
                match tokens[i].0 {
                    Tok::Punct('[') => depth += 1,
                    Tok::Punct(']') => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // The item: up to its `;`, or through its `{ ... }`.
        while i < tokens.len() {
            match tokens[i].0 {
                Tok::Punct(';') => {
                    i += 1;
                    break;
                }
                Tok::Punct('{') => {
                    let mut depth = 0;
                    while i < tokens.len() {
                        match tokens[i].0 {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    out
}

/// The imports of the file of module `module`: every path it names that
/// starts at `crate`, `super`, `self` or a child module, resolved to the
/// deepest module in `known` (and not the file's own).
fn imports_of(source: &str, module: &[String], known: &BTreeSet<Vec<String>>) -> Vec<Import> {
    let toks = without_tests(tokens(source));
    let mut imports = Vec::new();
    // The inline modules (`mod name { .. }`) the reader is in, with the
    // brace depth each closes at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                }
                depth -= 1;
                i += 1;
            }
            Tok::Ident(word)
                if word == "mod"
                    && matches!(toks.get(i + 1), Some((Tok::Ident(_), _)))
                    && matches!(toks.get(i + 2), Some((Tok::Punct('{'), _))) =>
            {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                    inline.push((name.clone(), depth + 1));
                }
                i += 2;
            }
            // A `use` item (not the `use<..>` of precise capturing).
            Tok::Ident(word)
                if word == "use" && toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Punct('<')) =>
            {
                let line = toks[i].1;
                let mut paths = Vec::new();
                let mut j = i + 1;
                if toks.get(j).map(|t| &t.0) != Some(&Tok::Path) {
                    use_tree(&toks, &mut j, &[], &mut paths);
                }
                while j < toks.len() && toks[j].0 != Tok::Punct(';') {
                    j += 1;
                }
                for path in paths {
                    if let Some(import) = resolve(&path, &here, module, known, line) {
                        imports.push(import);
                    }
                }
                i = j + 1;
            }
            Tok::Ident(_) if i == 0 || toks[i - 1].0 != Tok::Path => {
                let line = toks[i].1;
                let mut path = Vec::new();
                let mut j = i;
                while let Some((Tok::Ident(word), _)) = toks.get(j) {
                    path.push(word.clone());
                    if toks.get(j + 1).map(|t| &t.0) == Some(&Tok::Path)
                        && matches!(toks.get(j + 2), Some((Tok::Ident(_), _)))
                    {
                        j += 2;
                    } else {
                        break;
                    }
                }
                let is_macro = toks.get(j + 1).map(|t| &t.0) == Some(&Tok::Punct('!'));
                if path.len() > 1
                    && !is_macro
                    && let Some(import) = resolve(&path, &here, module, known, line)
                {
                    imports.push(import);
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    imports
}

/// Reads the use tree at `toks[*i]` under `prefix`, adding each full path
/// to `out` (`self` in a group stands for the group's prefix; a glob for its
/// module).
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    match toks.get(*i).map(|t| &t.0) {
        Some(Tok::Punct('{')) => {
            *i += 1;
            loop {
                match toks.get(*i).map(|t| &t.0) {
                    Some(Tok::Punct('}')) | None => {
                        *i += 1;
                        return;
                    }
                    Some(Tok::Punct(',')) => *i += 1,
                    _ => {
                        use_tree(toks, i, prefix, out);
                    }
                }
            }
        }
        Some(Tok::Punct('*')) => {
            *i += 1;
            out.push(prefix.to_vec());
        }
        Some(Tok::Ident(word)) => {
            let mut path = prefix.to_vec();
            if word != "self" || prefix.is_empty() {
                path.push(word.clone());
            }
            *i += 1;
            if toks.get(*i).map(|t| &t.0) == Some(&Tok::Path) {
                *i += 1;
                use_tree(toks, i, &path, out);
                return;
            }
            if matches!(toks.get(*i), Some((Tok::Ident(w), _)) if w == "as") {
                *i += 2;
            }
            out.push(path);
        }
        _ => *i += 1,
    }
}

/// The module `path`, named in the module `here` (the file `file` plus its
/// inline modules), resolves to: `None` for paths that start elsewhere (an
/// external crate, a local name), name no module, or name the file itself.
fn resolve(
    path: &[String],
    here: &[String],
    file: &[String],
    known: &BTreeSet<Vec<String>>,
    line: usize,
) -> Option<Import> {
    let mut full: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => here.to_vec(),
        child => {
            let mut child_path = file.to_vec();
            child_path.push(child.to_string());
            if !known.contains(&child_path) || here.len() != file.len() {
                return None;
            }
            file.to_vec()
        }
    };
    let mut rest = path;
    if rest[0] == "crate" || rest[0] == "self" {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        full.pop()?;
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|s| s == "self") {
        rest = &rest[1..];
    }
    full.extend(rest.iter().cloned());
    let target = (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|prefix| known.contains(prefix))?;
    (target != file).then(|| Import {
        line,
        written: path.join("::"),
        target,
    })
}

// ---------------------------------------------------------------------------
// The reader and the rules on small examples.

fn modules(files: &[(&str, &str)]) -> Vec<Module> {
    files
        .iter()
        .map(|(path, source)| Module {
            path: path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            file: format!("src/{}.rs", path.replace("::", "/")),
            source: source.to_string(),
        })
        .collect()
}

fn targets(source: &str, module: &str, known: &[&str]) -> Vec<String> {
    let split = |m: &str| -> Vec<String> {
        m.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let known: BTreeSet<Vec<String>> = known.iter().map(|m| split(m)).collect();
    imports_of(source, &split(module), &known)
        .into_iter()
        .map(|i| show(&i.target))
        .collect()
}

#[test]
fn use_lines_grouped_paths_and_inline_paths_are_read() {
    let known = ["", "a", "a::b", "a::c", "a::c::d", "e"];
    let source = r#"
        use crate::a::{b, c::{self, d as dd}};
        use super::e::*;
        fn f() { let _ = crate::e::thing(1); }
    "#;
    assert_eq!(
        targets(
            source,
            "a::c::x",
            &["a::c::x", "a::c::e"]
                .iter()
                .chain(&known)
                .copied()
                .collect::<Vec<_>>()
        ),
        ["a::b", "a::c", "a::c::d", "a::c::e", "e"]
    );
}

#[test]
fn comments_strings_macros_and_test_code_are_not_read() {
    let known = ["", "a", "b", "c"];
    let source = r##"
        // use crate::b;
        /* crate::b::x() */
        /// [`crate::b`]
        const S: &str = "crate::b::x()";
        const R: &str = r#"super::b"#;
        const C: char = '"';
        fn f<'a>(x: &'a str) { crate::my_macro!(); }
        #[cfg(test)]
        mod tests { use crate::b; fn g() { crate::c::h() } }
        use crate::c::k;
    "##;
    assert_eq!(targets(source, "a", &known), ["c"]);
}

#[test]
fn a_child_module_path_and_an_inline_module_resolve_where_they_stand() {
    let known = ["", "a", "a::child", "a::x"];
    let source = "mod inner { use super::x; } fn f() { child::go(); }";
    // `super` inside `mod inner` is `a` itself, so `super::x` is `a::x`.
    assert_eq!(targets(source, "a", &known), ["a::x", "a::child"]);
}

#[test]
fn a_cycle_and_an_upward_import_are_reported_with_their_file_and_line() {
    let layers: &[(&str, &[&[&str]])] = &[("f", &[&["low"], &["high"]])];
    let crate_modules = modules(&[
        ("", ""),
        ("f", "pub mod low; pub mod high;"),
        ("f::low", "use super::high::Thing;"),
        ("f::high", "\nuse super::low::Other;"),
    ]);
    let problems = check(&crate_modules, layers);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "src/f/low.rs:1: `super::high::Thing` imports f::high, a higher layer than f::low"
        ),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with("import cycle: f::high -> f::low -> f::high\n"),
        "{}",
        problems[1]
    );
    assert!(problems[1].contains("src/f/high.rs:2: `super::low::Other` imports f::low"));
}

#[test]
fn importing_the_folder_above_or_a_module_of_the_same_layer_is_refused() {
    let layers: &[(&str, &[&[&str]])] = &[("f", &[&["a", "b"]])];
    let crate_modules = modules(&[
        ("", ""),
        ("f", "pub mod a; pub mod b; pub use a::X;"),
        ("f::a", "pub struct X;"),
        ("f::b", "use super::X; use super::a::Y;"),
    ]);
    let problems = check(&crate_modules, layers);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("`super::X` imports f, which f::b is part of"));
    assert!(problems[1].contains("`super::a::Y` imports f::a, of the same layer as f::b"));
}
