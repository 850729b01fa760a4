fn main() {
    print!("{}", dbops::crdgen::render_all().unwrap());
}
