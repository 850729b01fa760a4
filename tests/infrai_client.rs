//! The infrai client against the infrai emulator, over real HTTP on loopback.

use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::providers::http::VendorHttp;
use dbops::providers::infrai::InfraiClient;
use dbops::providers::{
    BranchRequest, ProjectRequest, ProviderError, RestoreRequest, SnapshotRequest,
};
use secrecy::SecretString;

const KEY: &str = "ifr_pk_proj_test_key";

async fn start() -> (Emulator, String) {
    let emulator = Emulator::new(
        &EmulatorConfig::default()
            .with_keys("infrai", [KEY])
            .unwrap(),
    );
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    (emulator, format!("http://{addr}/infrai"))
}

fn client(endpoint: &str, key: &str) -> InfraiClient {
    let http = VendorHttp::new(
        ProviderApi::Infrai,
        endpoint,
        &SecretString::from(key.to_string()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    InfraiClient::new(http)
}

fn project(name: &str) -> ProjectRequest {
    ProjectRequest {
        name: name.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn project_create_get_list_delete() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let req = ProjectRequest {
        resumed: dbops::providers::Resume::First,
        name: "shop".into(),
        vendor: Some("supabase".into()),
        region: Some("eu-west-1".into()),
        plan: Some("small".into()),
        mode: Some("managed".into()),
        postgres_version: Some("16".into()),
        db_password: None,
    };
    let created = c.create_project(&req, "key-1").await.unwrap();
    assert!(created.id.starts_with("prj_"));
    assert_eq!(created.name, "shop");
    assert_eq!(created.region.as_deref(), Some("eu-west-1"));
    assert!(created.created_at.is_some());
    let uri = created.connection_uri.clone().unwrap();
    assert!(
        uri.expose().starts_with("postgresql://"),
        "uri is a postgres URL"
    );
    assert_eq!(emu.infrai.projects()[0].vendor, "supabase");

    let got = c.get_project(&created.id).await.unwrap();
    assert_eq!(got, created);

    let page = c.list_projects(None, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, created.id);
    assert!(page.next_cursor.is_none());

    c.delete_project(&created.id).await.unwrap();
    let gone = c.get_project(&created.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(!gone.is_transient());
    let again = c.delete_project(&created.id).await.unwrap_err();
    assert!(again.is_not_found());
}

#[tokio::test]
async fn create_with_the_same_idempotency_key_returns_the_same_project() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let first = c.create_project(&project("a"), "same-key").await.unwrap();
    let retry = c.create_project(&project("a"), "same-key").await.unwrap();
    assert_eq!(first.id, retry.id);
    assert_eq!(emu.infrai.projects().len(), 1);

    // Same key, different body: refused, nothing created.
    let err = c
        .create_project(&project("b"), "same-key")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(emu.infrai.projects().len(), 1);

    // A different key is a different project.
    let other = c.create_project(&project("a"), "other-key").await.unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(emu.infrai.projects().len(), 2);
}

#[tokio::test]
async fn the_idempotency_key_is_sent_on_every_create() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("p"), "k-p").await.unwrap();
    let breq = BranchRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        project_id: p.id.clone(),
        branch_name: "preview".into(),
        from_branch: None,
        schema_only: false,
    };
    let b1 = c.create_branch(&breq, "k-b").await.unwrap();
    let b2 = c.create_branch(&breq, "k-b").await.unwrap();
    assert_eq!(
        b1.id, b2.id,
        "a branch retry with the same key is the same branch"
    );
    let sreq = SnapshotRequest {
        project_id: p.id.clone(),
        label: Some("before-migration".into()),
    };
    let s1 = c.create_snapshot(&sreq, "k-s").await.unwrap();
    let s2 = c.create_snapshot(&sreq, "k-s").await.unwrap();
    assert_eq!(s1.id, s2.id);
    let rreq = RestoreRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        snapshot_id: s1.id.clone(),
        new_name: None,
    };
    let r1 = c.restore_snapshot(&rreq, "k-r").await.unwrap();
    let r2 = c.restore_snapshot(&rreq, "k-r").await.unwrap();
    assert_eq!(r1.id, r2.id);
    assert_eq!(emu.infrai.projects().len(), 2);
    assert_eq!(emu.infrai.snapshot_count(), 1);
}

#[tokio::test]
async fn branches_are_copies_of_their_parent() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("p"), "k1").await.unwrap();
    let main = emu.infrai.default_branch_id(&p.id).unwrap();
    assert!(emu.infrai.write_branch_data(&main, "users", "1"));

    let dev = c
        .create_branch(
            &BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: p.id.clone(),
                branch_name: "dev".into(),
                from_branch: None,
                schema_only: false,
            },
            "k2",
        )
        .await
        .unwrap();
    assert_eq!(dev.project_id, p.id);
    assert_eq!(dev.name, "dev");
    assert_ne!(
        dev.connection_uri, p.connection_uri,
        "a branch has its own endpoint"
    );
    emu.infrai.write_branch_data(&dev.id, "users", "2");

    let feature = c
        .create_branch(
            &BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: p.id.clone(),
                branch_name: "feature".into(),
                from_branch: Some("dev".into()),
                schema_only: false,
            },
            "k3",
        )
        .await
        .unwrap();
    let (parent, data) = emu.infrai.branch_data(&feature.id).unwrap();
    assert_eq!(parent.as_deref(), Some(dev.id.as_str()));
    assert_eq!(data.get("users").map(String::as_str), Some("2"));
    let (_, main_data) = emu.infrai.branch_data(&main).unwrap();
    assert_eq!(
        main_data.get("users").map(String::as_str),
        Some("1"),
        "writes to a branch do not touch its parent"
    );

    assert_eq!(c.get_branch(&feature.id).await.unwrap(), feature);
    let listed = c.list_branches(Some(&p.id), None, None).await.unwrap();
    let names: Vec<_> = listed.items.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["main", "dev", "feature"]);

    // Duplicate names and unknown parents are refused.
    let dup = c
        .create_branch(
            &BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: p.id.clone(),
                branch_name: "dev".into(),
                from_branch: None,
                schema_only: false,
            },
            "k4",
        )
        .await
        .unwrap_err();
    assert_eq!(dup.status(), Some(409));
    let orphan = c
        .create_branch(
            &BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: p.id.clone(),
                branch_name: "x".into(),
                from_branch: Some("nope".into()),
                schema_only: false,
            },
            "k5",
        )
        .await
        .unwrap_err();
    assert!(orphan.is_not_found());

    c.delete_branch(&feature.id).await.unwrap();
    assert!(c.get_branch(&feature.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn snapshots_and_restore_into_a_new_project() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("orders"), "k1").await.unwrap();
    let main = emu.infrai.default_branch_id(&p.id).unwrap();
    emu.infrai.write_branch_data(&main, "orders", "42");
    let snap = c
        .create_snapshot(
            &SnapshotRequest {
                project_id: p.id.clone(),
                label: Some("nightly".into()),
            },
            "k2",
        )
        .await
        .unwrap();
    assert_eq!(snap.project_id, p.id);
    assert_eq!(snap.label.as_deref(), Some("nightly"));
    assert!(snap.created_at.is_some());
    assert_eq!(c.get_snapshot(&snap.id).await.unwrap(), snap);
    let listed = c.list_snapshots(Some(&p.id), None, None).await.unwrap();
    assert_eq!(listed.items, vec![snap.clone()]);

    emu.infrai.write_branch_data(&main, "orders", "43");
    let restored = c
        .restore_snapshot(
            &RestoreRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                snapshot_id: snap.id.clone(),
                new_name: None,
            },
            "k3",
        )
        .await
        .unwrap();
    assert_ne!(restored.id, p.id);
    assert_eq!(restored.name, "orders-restored");
    assert!(restored.connection_uri.is_some());
    let restored_main = emu.infrai.default_branch_id(&restored.id).unwrap();
    let (_, data) = emu.infrai.branch_data(&restored_main).unwrap();
    assert_eq!(
        data.get("orders").map(String::as_str),
        Some("42"),
        "restore brings back the snapshot's data"
    );

    let named = c
        .restore_snapshot(
            &RestoreRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                snapshot_id: snap.id.clone(),
                new_name: Some("orders-copy".into()),
            },
            "k4",
        )
        .await
        .unwrap();
    assert_eq!(named.name, "orders-copy");

    let missing = c
        .restore_snapshot(
            &RestoreRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                snapshot_id: "snap_missing".into(),
                new_name: None,
            },
            "k5",
        )
        .await
        .unwrap_err();
    assert!(missing.is_not_found());
}

#[tokio::test]
async fn deleting_a_project_removes_its_branches_and_snapshots() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("p"), "k1").await.unwrap();
    let b = c
        .create_branch(
            &BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: p.id.clone(),
                branch_name: "b".into(),
                from_branch: None,
                schema_only: false,
            },
            "k2",
        )
        .await
        .unwrap();
    let s = c
        .create_snapshot(
            &SnapshotRequest {
                project_id: p.id.clone(),
                label: None,
            },
            "k3",
        )
        .await
        .unwrap();
    c.delete_project(&p.id).await.unwrap();
    assert!(c.get_branch(&b.id).await.unwrap_err().is_not_found());
    assert!(c.get_snapshot(&s.id).await.unwrap_err().is_not_found());
    assert_eq!(emu.infrai.branch_count(), 0);
    assert_eq!(emu.infrai.snapshot_count(), 0);
}

#[tokio::test]
async fn list_pagination_follows_the_cursor() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            c.create_project(&project(&format!("p{i}")), &format!("k{i}"))
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = c.list_projects(cursor.as_deref(), Some(3)).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|p| p.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let bad = c
        .list_projects(Some("not-a-cursor"), None)
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, "ifr_pk_proj_wrong");
    let err = c.create_project(&project("p"), "k").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.category(), "VendorUnauthorized");
    assert!(!err.is_transient());
    assert!(emu.infrai.projects().is_empty());

    // No header at all.
    let raw = reqwest::Client::new()
        .get(format!("{endpoint}/v1/db/project/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn errors_are_classified_permanent_or_transient() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    // 400: missing required field.
    let err = c.create_project(&project(""), "k").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("name is required"), "{err}");
    // 400: byok without a vendor.
    let byok = ProjectRequest {
        name: "x".into(),
        mode: Some("byok".into()),
        ..Default::default()
    };
    let err = c.create_project(&byok, "k2").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("VENDOR_REQUIRED"), "{err}");
    // 422: a vendor infrai does not route to.
    let bad_vendor = ProjectRequest {
        name: "x".into(),
        vendor: Some("oracle".into()),
        ..Default::default()
    };
    let err = c.create_project(&bad_vendor, "k3").await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(!err.is_transient());

    // Nobody listening: transient transport error.
    let dead = client("http://127.0.0.1:9/infrai", KEY);
    let err = dead.get_project("prj_x").await.unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn ids_with_slashes_stay_inside_their_path_segment() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    c.create_project(&project("p"), "k").await.unwrap();
    // Would hit /v1/db/project/list if the id were not encoded.
    let err = c.get_project("../list").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// A client allowed `per_second` requests per second, with no burst.
fn budgeted(endpoint: &str, per_second: u32) -> InfraiClient {
    InfraiClient::new(
        VendorHttp::new(
            ProviderApi::Infrai,
            endpoint,
            &SecretString::from(KEY.to_string()),
            Duration::from_secs(5),
            None,
        )
        .unwrap()
        .with_budget(per_second, 1),
    )
}

#[tokio::test]
async fn the_request_budget_spaces_requests_out() {
    let (emu, endpoint) = start().await;
    let budgeted = budgeted(&endpoint, 20);
    let id = budgeted
        .create_project(&project("p"), "k")
        .await
        .unwrap()
        .id;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        budgeted.get_project(&id).await.unwrap();
    }
    let elapsed = started.elapsed();
    // 20 per second with no burst: ten more requests need at least ~0.45 s.
    assert!(
        elapsed >= Duration::from_millis(450),
        "budget not enforced: {elapsed:?}"
    );

    let free = client(&endpoint, KEY);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        free.get_project(&id).await.unwrap();
    }
    assert!(
        started.elapsed() < elapsed,
        "without a budget the same requests are faster"
    );
    assert_eq!(emu.infrai.projects().len(), 1);
}

#[tokio::test]
async fn over_budget_the_first_call_of_a_reconcile_fails_fast_and_later_calls_wait() {
    use dbops::providers::http::reconcile_scope;
    let (emu, endpoint) = start().await;
    // Two requests per second, no burst: one every 500 ms.
    let budgeted = budgeted(&endpoint, 2);
    // One reconcile: its first call takes the token, its second waits its turn.
    let started = std::time::Instant::now();
    let id = reconcile_scope(async {
        let id = budgeted
            .create_project(&project("p"), "k")
            .await
            .unwrap()
            .id;
        budgeted.get_project(&id).await.unwrap();
        id
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the committed reconcile's second call waited: {:?}",
        started.elapsed()
    );

    // The next reconcile finds the budget spent: it is told how long to wait,
    // at once, and nothing is sent.
    let started = std::time::Instant::now();
    let err = reconcile_scope(budgeted.get_project(&id))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    let wait = err.throttled().expect("a throttled error");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    assert!(
        waited < Duration::from_millis(100),
        "failed fast: {waited:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.category(), "RequestBudgetExhausted");
    assert_eq!(err.retry_after(), Some(wait));

    // After the wait, the same call goes through.
    tokio::time::sleep(wait).await;
    reconcile_scope(budgeted.get_project(&id)).await.unwrap();
    assert_eq!(emu.infrai.projects().len(), 1);
}

#[tokio::test]
async fn a_resumed_create_finds_what_it_made_even_when_infrai_forgot_the_key() {
    use dbops::providers::{BranchLifecycle, ProjectLifecycle, RestoreApi, RestoreProgress};
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let first = ProjectLifecycle::create_project(&c, &project("kept"), "key-1")
        .await
        .unwrap();
    // Resumed with a key infrai no longer knows: found by name, not made again.
    let resumed = ProjectRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..project("kept")
    };
    let again = ProjectLifecycle::create_project(&c, &resumed, "key-forgotten")
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(emu.infrai.projects().len(), 1);
    // Resumed but never made: it is made now.
    let fresh = ProjectRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..project("never-made")
    };
    let made = ProjectLifecycle::create_project(&c, &fresh, "key-2")
        .await
        .unwrap();
    assert_ne!(made.id, first.id);
    assert_eq!(emu.infrai.projects().len(), 2);

    let branch = BranchRequest {
        project_id: first.id.clone(),
        branch_name: "preview".into(),
        ..Default::default()
    };
    let b = BranchLifecycle::create_branch(&c, &branch, "kb-1")
        .await
        .unwrap();
    let branches = emu.infrai.branch_count();
    let resumed_branch = BranchRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..branch.clone()
    };
    let b2 = BranchLifecycle::create_branch(&c, &resumed_branch, "kb-forgotten")
        .await
        .unwrap();
    assert_eq!(b2.id, b.id);
    assert_eq!(emu.infrai.branch_count(), branches);

    let snapshot = c
        .create_snapshot(
            &SnapshotRequest {
                project_id: first.id.clone(),
                label: None,
            },
            "ks",
        )
        .await
        .unwrap();
    let restore = RestoreRequest {
        db_password: None,
        snapshot_id: snapshot.id.clone(),
        new_name: Some("kept-copy".into()),
        resumed: dbops::providers::Resume::First,
    };
    let RestoreProgress::Done(copy) = RestoreApi::restore_snapshot(&c, &restore, "kr-1")
        .await
        .unwrap()
    else {
        panic!("infrai restores at once")
    };
    let resumed_restore = RestoreRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..restore
    };
    let RestoreProgress::Done(again) =
        RestoreApi::restore_snapshot(&c, &resumed_restore, "kr-forgotten")
            .await
            .unwrap()
    else {
        panic!("infrai restores at once")
    };
    assert_eq!(again.id, copy.id);
    assert_eq!(emu.infrai.projects().len(), 3);
}
