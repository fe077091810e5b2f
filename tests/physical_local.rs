//! Local-mode physical backups (pgkeep reads the data directory itself) where they differ from
//! pg_basebackup's: what is left out of the copy, a damaged bundle, and a data directory that is
//! not the server's. The round trips of both modes are in tests/physical.rs.

mod common;
#[allow(dead_code)]
#[path = "common/physical.rs"]
mod physical;

use common::json;
use physical::*;

use std::fs;
use std::process::Command;

use pgkeep_testkit::PgCluster;

/// The backup's file list (files.json.zst), decompressed by the zstd program.
fn file_list(repo: &Repo, id: &str) -> String {
    let path = repo
        .root
        .as_ref()
        .unwrap()
        .join(format!("main/backups/{id}/files.json.zst"));
    let out = Command::new("zstd").arg("-dc").arg(&path).output().unwrap();
    assert!(out.status.success(), "zstd -dc {}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_copy_leaves_out_unlogged_temporary_and_rebuilt_files_and_restores() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    pg.psql("CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 50000) g");
    pg.psql("CREATE TABLE kept AS SELECT g FROM generate_series(1, 50000) g");
    let unlogged = pg.psql("SELECT pg_relation_filepath('scratch')");
    let logged = pg.psql("SELECT pg_relation_filepath('kept')");
    let b = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
    ));
    assert_eq!(b["physical"]["mode"], "local", "{b:#}");
    let id = b["id"].as_str().unwrap();
    let list = file_list(&repo, id);
    let has = |path: &str| list.contains(&format!("\"path\":\"{path}\""));
    assert!(has(&logged) && has(&format!("{unlogged}_init")), "{list}");
    assert!(
        !has(&unlogged),
        "the unlogged table's data was copied: {list}"
    );
    for left_out in [
        "postmaster.pid",
        "postmaster.opts",
        "pg_wal/000000010000000000000001",
    ] {
        assert!(!has(left_out), "{left_out} was copied");
    }
    for kept in [
        "pg_wal",
        "pg_wal/archive_status",
        "pg_stat_tmp",
        "global/pg_control",
    ] {
        assert!(has(kept), "{kept} is missing");
    }
    // pg_control is the last entry: it was read after every other file.
    assert!(
        list.rfind("\"path\":") == list.find("\"path\":\"global/pg_control\""),
        "{list}"
    );

    let last = switch_wal(&pg);
    wait_archived_pg(&pg, &last);
    let (restored, _) = restore(&pg, &repo, "restored", &["--latest"]);
    assert_eq!(restored.psql("SELECT count(*) FROM kept"), "50000");
    assert_eq!(restored.psql("SELECT count(*) FROM scratch"), "0");
}

#[test]
fn a_damaged_bundle_fails_restore_and_verify_naming_it_and_leaves_no_target() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 100000) g");
    let b = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
    ));
    let id = b["id"].as_str().unwrap();
    let bundle = format!("main/backups/{id}/files/000000.zst");
    let path = repo.root.as_ref().unwrap().join(&bundle);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&path, bytes).unwrap();

    let target = repo.scratch("restored");
    let (code, message) = refused(&pg, &repo, "restored", &["--latest"]);
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains(&bundle),
        "the message names the bundle: {message}"
    );
    assert!(
        !target.exists(),
        "a failed restore left {}",
        target.display()
    );

    let out = run(pgkeep(&pg, &repo).args(["--json", "verify", id]));
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let report = json(&out);
    let damaged: Vec<_> = report["backups"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["ok"] == false)
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(damaged, [bundle], "{report:#}");
}

#[test]
fn local_mode_is_refused_for_a_data_directory_that_is_not_the_servers() {
    let other = PgCluster::start();
    let repo = Repo::with_config(
        |dir| format!("file://{}/repo", dir.display()),
        &format!(
            "[postgres]\npgdata = {}\n",
            toml_string(&other.data_dir().to_string_lossy())
        ),
    );
    let pg = archiving_cluster(&repo);
    let out = run(pgkeep(&pg, &repo).args(["backup", "physical", "--mode", "local"]));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("--mode local reads the data directory itself"),
        "{text}"
    );
    assert!(
        text.contains("belongs to another cluster") && text.contains("fix:"),
        "{text}"
    );
    // Auto mode falls back to pg_basebackup, and says so at -v.
    let out = ok(pgkeep(&pg, &repo).args(["-v", "--json", "backup", "physical"]));
    assert_eq!(json(&out)["physical"]["mode"], "stream");
    assert!(said(&out).contains("stream mode"), "{}", said(&out));
}

#[test]
fn tablespaces_are_copied_and_restored_beside_the_data_directory() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    let location = repo.scratch("space");
    fs::create_dir(&location).unwrap();
    PgCluster::chown_for_server(&location);
    pg.psql(&format!(
        "CREATE TABLESPACE far LOCATION '{}'",
        location.display()
    ));
    pg.psql("CREATE TABLE placed (g int) TABLESPACE far");
    pg.psql("CREATE UNLOGGED TABLE placed_scratch (g int) TABLESPACE far");
    pg.psql("INSERT INTO placed SELECT generate_series(1, 30000)");
    pg.psql("INSERT INTO placed_scratch SELECT generate_series(1, 30000)");
    let oid = pg.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'far'");
    let b = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
    ));
    assert_eq!(b["physical"]["mode"], "local", "{b:#}");
    let list = file_list(&repo, b["id"].as_str().unwrap());
    let scratch = pg.psql("SELECT pg_relation_filepath('placed_scratch')");
    assert!(
        list.contains(&format!("\"path\":\"{scratch}_init\"")),
        "{list}"
    );
    assert!(!list.contains(&format!("\"path\":\"{scratch}\"")), "{list}");
    let before: Vec<_> = fs::read_dir(&location)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();

    pg.psql("INSERT INTO placed SELECT generate_series(30001, 40000)");
    let last = switch_wal(&pg);
    wait_archived_pg(&pg, &last);
    let (restored, _) = restore(&pg, &repo, "restored", &["--latest"]);
    assert_eq!(restored.psql("SELECT count(*) FROM placed"), "40000");
    assert_eq!(restored.psql("SELECT count(*) FROM placed_scratch"), "0");
    // The tablespace is in restored.tablespaces/OID beside the restored data directory, linked
    // from its pg_tblspc; its old location (the running cluster's) was not touched.
    let link = repo.scratch("restored").join("pg_tblspc").join(&oid);
    let place = repo.scratch("restored.tablespaces").join(&oid);
    assert_eq!(fs::read_link(&link).unwrap(), place);
    let versions: Vec<_> = fs::read_dir(&place).unwrap().flatten().collect();
    assert!(
        versions.len() == 1
            && versions[0]
                .file_name()
                .to_string_lossy()
                .starts_with("PG_15_"),
        "{}: {versions:?}",
        place.display()
    );
    let after: Vec<_> = fs::read_dir(&location)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(before, after);
    assert_eq!(pg.psql("SELECT count(*) FROM placed"), "40000");

    // A restore whose tablespace directory is taken is refused before anything is written.
    fs::create_dir(repo.scratch("again.tablespaces")).unwrap();
    let (code, message) = refused(&pg, &repo, "again", &["--latest"]);
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("again.tablespaces already exists"),
        "{message}"
    );
    assert!(!repo.scratch("again").exists());
}
