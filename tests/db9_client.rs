//! The DB9 client against the DB9 emulator, over real HTTP on loopback.

use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::providers::db9::Db9Client;
use dbops::providers::http::VendorHttp;
use dbops::providers::{
    BranchApi, BranchLifecycle, BranchRequest, CredentialApi, Operation, Password, ProjectApi,
    ProjectLifecycle, ProjectRequest, Provider, ProviderError, ResourceState, RestoreApi,
    RestoreProgress, RestoreRequest, RotationProgress, RotationTarget, SnapshotApi,
    SnapshotDeletion, SnapshotRequest, VendorProject, VendorSnapshot,
};
use secrecy::SecretString;

const KEY: &str = "db9_test_key";

async fn start() -> (Emulator, String) {
    let emulator = Emulator::new(&EmulatorConfig::default().with_keys("db9", [KEY]).unwrap());
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    (emulator, format!("http://{addr}/db9"))
}

fn client(endpoint: &str, key: &str) -> Db9Client {
    let http = VendorHttp::new(
        ProviderApi::Db9,
        endpoint,
        &SecretString::from(key.to_string()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    Db9Client::new(http)
}

fn project(name: &str) -> ProjectRequest {
    ProjectRequest {
        name: name.to_string(),
        ..Default::default()
    }
}

fn branch(project_id: &str, name: &str) -> BranchRequest {
    BranchRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        project_id: project_id.to_string(),
        branch_name: name.to_string(),
        from_branch: None,
        schema_only: false,
    }
}

fn snapshot(project_id: &str, label: Option<&str>) -> SnapshotRequest {
    SnapshotRequest {
        project_id: project_id.to_string(),
        label: label.map(str::to_string),
    }
}

/// Reads a snapshot until it is no longer provisioning (a bounded number of times).
async fn wait_for_snapshot(c: &Db9Client, project_id: &str, id: &str) -> VendorSnapshot {
    for _ in 0..10 {
        let s = c.get_snapshot(project_id, id).await.unwrap();
        if !matches!(s.state, ResourceState::Provisioning(_)) {
            return s;
        }
    }
    panic!("snapshot {id} never finished");
}

fn uri(p: &VendorProject) -> String {
    p.connection_uri.as_ref().unwrap().expose().to_string()
}

#[tokio::test]
async fn project_create_get_delete() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let req = ProjectRequest {
        region: Some("eu-west-1".into()),
        ..project("team-a-shop")
    };
    let created = c.create_project(&req, "key-1").await.unwrap();
    assert!(created.id.starts_with("db_"));
    assert_eq!(created.name, "team-a-shop");
    assert_eq!(created.region.as_deref(), Some("eu-west-1"));
    assert_eq!(created.state, ResourceState::Ready);
    assert!(created.created_at.is_some());
    let password = emu.db9.admin_password(&created.id).unwrap();
    let connection = uri(&created);
    assert!(connection.starts_with("postgresql://admin:"));
    assert!(
        connection.contains(&format!(":{password}@")),
        "the connection string carries the generated password"
    );
    assert!(!format!("{created:?}").contains(&password));
    assert!(!c.needs_operator_password());

    let got = c.get_project(&created.id).await.unwrap();
    assert_eq!(got, created);

    c.delete_project(&created.id).await.unwrap();
    assert_eq!(emu.db9.database_count(), 0);
    let gone = c.get_project(&created.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(!gone.is_transient());
    let again = c.delete_project(&created.id).await.unwrap_err();
    assert!(again.is_not_found());
    // "Database disabled": the delete is soft. The database is still listed
    // and read, as disabled, and the client takes that for gone; its name is
    // free for a first attempt again.
    let listed = emu.db9.databases();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "disabled");
    let reused = c
        .create_project(&project("team-a-shop"), "key-2")
        .await
        .unwrap();
    assert_ne!(reused.id, created.id);
}

#[tokio::test]
async fn a_deleted_projects_branches_stay_until_their_own_delete() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    let b = c
        .create_branch(&branch(&p.id, "app-dev"), "kb")
        .await
        .unwrap();
    c.delete_project(&p.id).await.unwrap();
    // The document does not say a database's branches go with it; in the
    // emulator they stay, and each is deleted by its own resource.
    assert_eq!(emu.db9.database_count(), 1);
    let kept = c.get_branch(&p.id, &b.id).await.unwrap();
    assert_eq!(kept.state, ResourceState::Ready);
    c.delete_branch(&p.id, &b.id).await.unwrap();
    assert_eq!(emu.db9.database_count(), 0);
}

#[tokio::test]
async fn a_resumed_create_finds_its_database_and_a_first_attempt_never_takes_a_name() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let first = c.create_project(&project("shop"), "key-1").await.unwrap();
    // The first answer was lost; the resumed retry (same deterministic name) finds the database.
    let resumed = ProjectRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..project("shop")
    };
    let retry = c.create_project(&resumed, "key-1").await.unwrap();
    assert_eq!(retry.id, first.id);
    // A first attempt under a name someone else holds is refused, and makes nothing.
    let conflict = c
        .create_project(&project("shop"), "key-9")
        .await
        .unwrap_err();
    assert!(conflict.is_name_conflict(), "{conflict}");
    assert_eq!(conflict.category(), "NameConflict");
    assert!(!conflict.is_transient());
    assert_eq!(uri(&retry), uri(&first));
    assert_eq!(emu.db9.database_count(), 1);
    assert_eq!(emu.db9.database_create_count(), 1);

    let other = c.create_project(&project("blog"), "key-2").await.unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(emu.db9.database_count(), 2);
}

#[tokio::test]
async fn get_maps_the_database_state() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("p"), "k").await.unwrap();
    assert!(emu.db9.set_database_state(&p.id, "creating"));
    assert_eq!(
        c.get_project(&p.id).await.unwrap().state,
        ResourceState::Provisioning("creating".into())
    );
    emu.db9.set_database_state(&p.id, "failed");
    assert_eq!(
        c.get_project(&p.id).await.unwrap().state,
        ResourceState::Failed("failed".into())
    );
    emu.db9.set_database_state(&p.id, "ready");
    assert_eq!(
        c.get_project(&p.id).await.unwrap().state,
        ResourceState::Ready
    );
}

#[tokio::test]
async fn branch_create_get_delete() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    assert!(emu.db9.write_data(&p.id, "users", "1"));

    let b = c
        .create_branch(&branch(&p.id, "app-preview"), "kb")
        .await
        .unwrap();
    assert!(b.id.starts_with("db_"));
    assert_ne!(b.id, p.id);
    assert_eq!(b.name, "app-preview");
    assert_eq!(b.project_id, p.id);
    assert_eq!(b.state, ResourceState::Ready);
    assert_ne!(
        b.connection_uri, p.connection_uri,
        "a branch is its own database"
    );
    let view = emu.db9.databases();
    assert_eq!(view[1].parent_database_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(
        emu.db9
            .data(&b.id)
            .unwrap()
            .get("users")
            .map(String::as_str),
        Some("1"),
        "a branch starts as a copy of its database"
    );

    assert_eq!(c.get_branch(&p.id, &b.id).await.unwrap(), b);
    assert_eq!(
        c.get_branch(&p.id, &p.id).await.unwrap().project_id,
        "",
        "a database that is no branch reports no project"
    );

    // A resumed retry finds the branch instead of making another; a first
    // attempt is refused the taken name.
    let resumed = BranchRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..branch(&p.id, "app-preview")
    };
    let retry = c.create_branch(&resumed, "kb").await.unwrap();
    assert!(
        c.create_branch(&branch(&p.id, "app-preview"), "kb")
            .await
            .unwrap_err()
            .is_name_conflict()
    );
    assert_eq!(retry.id, b.id);
    assert_eq!(emu.db9.database_count(), 2);

    // DB9 branches whole databases: from_branch is refused without a request.
    let from = c
        .create_branch(
            &BranchRequest {
                from_branch: Some("app-preview".into()),
                ..branch(&p.id, "app-feature")
            },
            "kf",
        )
        .await
        .unwrap_err();
    assert_eq!(from.status(), Some(422), "{from}");
    assert_eq!(emu.db9.database_count(), 2);

    // Deletes are checked against the project first.
    let other = c.create_project(&project("other"), "k2").await.unwrap();
    let wrong = c.delete_branch(&other.id, &b.id).await.unwrap_err();
    assert_eq!(wrong.status(), Some(422), "{wrong}");
    let own = c.delete_branch(&p.id, &p.id).await.unwrap_err();
    assert_eq!(own.status(), Some(422), "{own}");
    assert_eq!(emu.db9.database_count(), 3);

    c.delete_branch(&p.id, &b.id).await.unwrap();
    let gone = c.get_branch(&p.id, &b.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(
        c.delete_branch(&p.id, &b.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // The project's database is untouched.
    assert!(c.get_project(&p.id).await.is_ok());
}

#[tokio::test]
async fn branches_work_when_reads_show_only_documented_fields() {
    let (emu, endpoint) = start().await;
    // `GET /customer/databases/{id}` without `parent_database_id`, as documented.
    emu.db9.set_strict(true);
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    let b = c
        .create_branch(&branch(&p.id, "app-preview"), "kb")
        .await
        .unwrap();
    assert_eq!(b.project_id, p.id, "from the create answer");
    // The password comes from the stored credentials, not the details.
    let password = emu.db9.admin_password(&p.id).unwrap();
    let read = c.get_project(&p.id).await.unwrap();
    assert!(
        read.connection_uri
            .unwrap()
            .expose()
            .contains(&format!(":{password}@")),
        "the connection URI carries the stored password"
    );
    let branch_password = emu.db9.admin_password(&b.id).unwrap();
    let read = c.get_branch(&p.id, &b.id).await.unwrap();
    assert!(
        read.connection_uri
            .unwrap()
            .expose()
            .contains(&format!(":{branch_password}@"))
    );
    // A read that does not show `parent_database_id` names no project: the
    // client never fills in the one it was asked about.
    let got = c.get_branch(&p.id, &b.id).await.unwrap();
    assert_eq!(
        (got.id.as_str(), got.project_id.as_str()),
        (b.id.as_str(), "")
    );
    assert_eq!(c.get_branch(&p.id, &p.id).await.unwrap().project_id, "");

    // A crash-retried (resumed) create finds its branch by name.
    let resumed = BranchRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..branch(&p.id, "app-preview")
    };
    let retry = c.create_branch(&resumed, "kb").await.unwrap();
    assert_eq!(retry.id, b.id);
    assert_eq!(emu.db9.database_count(), 2);

    // Rotation and delete go through; the project's database is never taken for a branch.
    let target = RotationTarget::Branch {
        project_id: p.id.clone(),
        id: b.id.clone(),
    };
    let rotated = c
        .rotate_credentials(&target, &Password::generate(), "kr")
        .await
        .unwrap();
    assert!(matches!(rotated, RotationProgress::Done { .. }));
    let own = c.delete_branch(&p.id, &p.id).await.unwrap_err();
    assert_eq!(own.status(), Some(422), "{own}");
    c.delete_branch(&p.id, &b.id).await.unwrap();
    assert!(c.get_branch(&p.id, &b.id).await.unwrap_err().is_not_found());
    assert!(c.get_project(&p.id).await.is_ok());
}

#[tokio::test]
async fn backup_is_creating_then_ready_and_can_be_deleted() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();

    let s = c
        .create_snapshot(&snapshot(&p.id, Some("pre-migration")), "ks")
        .await
        .unwrap();
    assert!(s.id.starts_with("bkp_"));
    assert_eq!(s.project_id, p.id);
    assert_eq!(s.label.as_deref(), Some("pre-migration"));
    assert!(s.created_at.is_some());
    assert_eq!(s.state, ResourceState::Provisioning("creating".into()));

    let first_read = c.get_snapshot(&p.id, &s.id).await.unwrap();
    assert_eq!(
        first_read.state,
        ResourceState::Provisioning("creating".into())
    );
    let done = wait_for_snapshot(&c, &p.id, &s.id).await;
    assert_eq!(done.state, ResourceState::Ready);
    assert_eq!(done.label.as_deref(), Some("pre-migration"));

    c.delete_snapshot(&p.id, &s.id).await.unwrap();
    assert_eq!(emu.db9.backup_count(), 0);
    assert!(
        c.get_snapshot(&p.id, &s.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        c.delete_snapshot(&p.id, &s.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn an_unlabelled_backup_retry_is_the_same_backup() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    let first = c
        .create_snapshot(&snapshot(&p.id, None), "dbops-uid-snapshot-create")
        .await
        .unwrap();
    let retry = c
        .create_snapshot(&snapshot(&p.id, None), "dbops-uid-snapshot-create")
        .await
        .unwrap();
    assert_eq!(retry.id, first.id);
    assert_eq!(emu.db9.backup_count(), 1);
    let other = c
        .create_snapshot(&snapshot(&p.id, None), "dbops-uid2-snapshot-create")
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(emu.db9.backup_count(), 2);
}

#[tokio::test]
async fn restore_is_pending_then_done_and_the_key_makes_one_restore() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    emu.db9.write_data(&p.id, "users", "42");
    let s = c
        .create_snapshot(&snapshot(&p.id, None), "ks")
        .await
        .unwrap();

    let req = RestoreRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        snapshot_id: s.id.clone(),
        new_name: Some("app-restored".into()),
    };
    // A backup still being made cannot be restored.
    let early = c.restore_snapshot(&req, "kr").await.unwrap_err();
    assert_eq!(early.status(), Some(422), "{early}");
    assert_eq!(emu.db9.restore_count(), 0);
    wait_for_snapshot(&c, &p.id, &s.id).await;

    let RestoreProgress::Pending { handle, state } = c.restore_snapshot(&req, "kr").await.unwrap()
    else {
        panic!("a restore starts pending");
    };
    assert!(handle.starts_with("rst_"));
    assert_eq!(state, "pending");
    let RestoreProgress::Pending { handle: again, .. } =
        c.restore_snapshot(&req, "kr").await.unwrap()
    else {
        panic!("a retry is the same pending restore");
    };
    assert_eq!(again, handle);
    assert_eq!(emu.db9.restore_count(), 1);

    // Same key, different request: refused.
    let other = RestoreRequest {
        new_name: Some("elsewhere".into()),
        ..req.clone()
    };
    let conflict = c.restore_snapshot(&other, "kr").await.unwrap_err();
    assert_eq!(conflict.status(), Some(409), "{conflict}");

    let mut progress = c.restore_status(&handle).await.unwrap();
    assert_eq!(
        progress,
        RestoreProgress::Pending {
            handle: handle.clone(),
            state: "running".into()
        }
    );
    for _ in 0..5 {
        if !matches!(progress, RestoreProgress::Pending { .. }) {
            break;
        }
        progress = c.restore_status(&handle).await.unwrap();
    }
    let RestoreProgress::Done(restored) = progress else {
        panic!("the restore finishes: {progress:?}");
    };
    assert_ne!(restored.id, p.id);
    assert_eq!(restored.name, "app-restored");
    assert_eq!(restored.state, ResourceState::Ready);
    let password = emu.db9.admin_password(&restored.id).unwrap();
    assert!(uri(&restored).contains(&password));
    assert_eq!(
        emu.db9
            .data(&restored.id)
            .unwrap()
            .get("users")
            .map(String::as_str),
        Some("42"),
        "the new database holds the backup's data"
    );

    // Replaying the create after it finished answers the same database; a
    // first attempt would take the name for someone else's.
    assert!(
        c.restore_snapshot(&req, "kr")
            .await
            .unwrap_err()
            .is_name_conflict()
    );
    let resumed = RestoreRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..req.clone()
    };
    let RestoreProgress::Done(replayed) = c.restore_snapshot(&resumed, "kr").await.unwrap() else {
        panic!("a finished restore replays as done");
    };
    assert_eq!(replayed.id, restored.id);
    assert_eq!(emu.db9.restore_count(), 1);
    assert_eq!(emu.db9.database_count(), 2);

    // A restore is followed by the database it makes: one never made is
    // still pending, and a handle naming no database is refused.
    assert!(matches!(
        c.restore_status("rst_nope#never-made").await.unwrap(),
        RestoreProgress::Pending { .. }
    ));
    let refused = c.restore_status("rst_nope").await.unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
}

#[tokio::test]
async fn reset_password_changes_the_password() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    let p = c.create_project(&project("app"), "k").await.unwrap();
    let old = emu.db9.admin_password(&p.id).unwrap();
    let proposed = Password::generate();

    let progress = c
        .rotate_credentials(
            &RotationTarget::Project { id: p.id.clone() },
            &proposed,
            "kr",
        )
        .await
        .unwrap();
    let RotationProgress::Done {
        connection_uri: Some(connection),
        password: Some(password),
        ..
    } = progress
    else {
        panic!("the reset is done at once with the new credentials");
    };
    let new = emu.db9.admin_password(&p.id).unwrap();
    assert_ne!(new, old);
    assert_eq!(password.expose(), new);
    assert_ne!(password, proposed, "DB9 chooses the password");
    assert!(connection.expose().contains(&format!(":{new}@")));
    assert!(!format!("{connection:?}{password:?}").contains(&new));

    // Branches too, checked against their project.
    let b = c
        .create_branch(&branch(&p.id, "app-dev"), "kb")
        .await
        .unwrap();
    let before = emu.db9.admin_password(&b.id).unwrap();
    let target = RotationTarget::Branch {
        project_id: p.id.clone(),
        id: b.id.clone(),
    };
    c.rotate_credentials(&target, &proposed, "kr2")
        .await
        .unwrap();
    assert_ne!(emu.db9.admin_password(&b.id).unwrap(), before);
    // A read that shows another parent is refused (the document does not
    // promise the field, so its absence is not a refusal: see the strict test).
    let other = c.create_project(&project("other"), "ko").await.unwrap();
    let other_branch = c
        .create_branch(&branch(&other.id, "other-preview"), "kob")
        .await
        .unwrap();
    let wrong = RotationTarget::Branch {
        project_id: p.id.clone(),
        id: other_branch.id.clone(),
    };
    let refused = c
        .rotate_credentials(&wrong, &proposed, "kr3")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422), "{refused}");

    let missing = c
        .rotate_credentials(
            &RotationTarget::Project {
                id: "db_missing".into(),
            },
            &proposed,
            "kr4",
        )
        .await
        .unwrap_err();
    assert!(missing.is_not_found());
}

#[tokio::test]
async fn a_wrong_key_is_401_and_a_read_only_key_403() {
    let (emu, endpoint) = start().await;
    let bad = client(&endpoint, "db9_wrong");
    let err = bad.get_project("db_x").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.category(), "VendorUnauthorized");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("db9_wrong"), "{err}");
    let err = bad.create_project(&project("x"), "k").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(emu.db9.database_count(), 0);

    emu.db9.add_read_only_key("db9_read_only");
    let reader = client(&endpoint, "db9_read_only");
    let p = client(&endpoint, KEY)
        .create_project(&project("app"), "k")
        .await
        .unwrap();
    assert_eq!(reader.get_project(&p.id).await.unwrap().id, p.id);
    let forbidden = reader.delete_project(&p.id).await.unwrap_err();
    assert_eq!(forbidden.status(), Some(403), "{forbidden}");
    assert_eq!(forbidden.category(), "VendorForbidden");
    assert_eq!(emu.db9.database_count(), 1);
}

#[tokio::test]
async fn message_bodies_become_errors() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);

    let missing = c.get_project("db_nope").await.unwrap_err();
    let ProviderError::Http {
        status, message, ..
    } = &missing
    else {
        panic!("an HTTP error: {missing}");
    };
    assert_eq!(*status, 404);
    assert_eq!(message, "database db_nope not found");
    assert_eq!(missing.category(), "VendorNotFound");

    // Names are unique per account: a branch's name cannot be a project's.
    // A first attempt is refused before any call; a resumed one gets DB9's 409.
    let p = c.create_project(&project("app"), "k").await.unwrap();
    assert!(
        c.create_branch(&branch(&p.id, "app"), "kb")
            .await
            .unwrap_err()
            .is_name_conflict()
    );
    let resumed = BranchRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..branch(&p.id, "app")
    };
    let dup = c.create_branch(&resumed, "kb").await.unwrap_err();
    let ProviderError::Http {
        status, message, ..
    } = &dup
    else {
        panic!("an HTTP error: {dup}");
    };
    assert_eq!(*status, 409);
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(dup.category(), "VendorConflict");

    let b = c
        .create_branch(&branch(&p.id, "app-dev"), "kb")
        .await
        .unwrap();
    assert!(
        c.create_project(&project(&b.name), "k2")
            .await
            .unwrap_err()
            .is_name_conflict()
    );
    let resumed = ProjectRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..project(&b.name)
    };
    let taken = c.create_project(&resumed, "k2").await.unwrap_err();
    assert_eq!(
        taken.status(),
        Some(409),
        "a branch's name is not adopted as a project"
    );

    let invalid = c
        .create_project(&project("no spaces allowed"), "k3")
        .await
        .unwrap_err();
    assert_eq!(invalid.status(), Some(422), "{invalid}");
    let empty = c.create_project(&project(""), "k4").await.unwrap_err();
    assert_eq!(empty.status(), Some(400), "{empty}");
}

#[tokio::test]
async fn unsupported_operations_answer_unsupported() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);
    assert_eq!(c.api(), ProviderApi::Db9);
    for op in <Operation as strum::IntoEnumIterator>::iter() {
        // DB9 resets a branch by making a new one, not in place.
        let unsupported = matches!(
            op,
            Operation::ByokRegister
                | Operation::ByokRotate
                | Operation::ByokRevoke
                | Operation::ByokPolicy
                | Operation::BranchResetInPlace
        );
        assert_eq!(c.supports(op), !unsupported, "{op}");
    }
    assert_eq!(c.capabilities().len(), 13);
    let p: &dyn Provider = &c;
    let err = p.byok_for(Operation::ByokRegister).map(|_| ()).unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Unsupported {
                api: ProviderApi::Db9,
                ..
            }
        ),
        "{err}"
    );
    // The reset is synchronous: there is no rotation job to poll.
    let err = c
        .rotation_status(&RotationTarget::Project { id: "db_1".into() }, "job")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidResponse { .. }) && !err.is_transient(),
        "{err}"
    );
}
