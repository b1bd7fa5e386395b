//! What is opened as a cache or replayed as a recording must be rgd's and a regular file: a
//! FIFO, a folder or another program's SQLite database is refused at once and left untouched.

use rgd_cache::{APPLICATION_ID, CacheMode, CallCache};
use rusqlite::Connection;

#[test]
fn a_fifo_or_a_folder_is_refused_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("calls.sqlite");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    for mode in [CacheMode::ReadOnly, CacheMode::ReadWrite] {
        let e = CallCache::open(&fifo, mode).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
    let e = CallCache::open(t.path(), CacheMode::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let e = CallCache::off().import(&fifo).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn another_programs_database_is_refused_and_never_modified() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("other.sqlite");
    {
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');")
            .unwrap();
    }
    let before = std::fs::read(&p).unwrap();
    for mode in [CacheMode::ReadOnly, CacheMode::ReadWrite] {
        let e = CallCache::open(&p, mode).unwrap_err().to_string();
        assert!(
            e.contains("not an rgd call cache") && e.contains("people"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert!(!t.path().join("other.sqlite-wal").exists());
    // a database marked as another application's is refused too
    let q = t.path().join("marked.sqlite");
    Connection::open(&q)
        .unwrap()
        .execute_batch("PRAGMA application_id = 42;")
        .unwrap();
    let e = CallCache::open(&q, CacheMode::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(e.contains("application_id is 0x2a"), "{e}");
}

#[test]
fn a_new_cache_is_marked_as_rgd_and_an_unmarked_rgd_cache_still_opens() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("calls.sqlite");
    drop(CallCache::open(&p, CacheMode::ReadWrite).unwrap());
    let id: i32 = Connection::open(&p)
        .unwrap()
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, APPLICATION_ID);
    // a cache written before the marker: rgd's table, id 0
    let old = t.path().join("old.sqlite");
    Connection::open(&old)
        .unwrap()
        .execute_batch("CREATE TABLE calls (key TEXT PRIMARY KEY, identity TEXT NOT NULL, op TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL);")
        .unwrap();
    CallCache::open(&old, CacheMode::ReadOnly).unwrap();
    CallCache::open(&old, CacheMode::ReadWrite).unwrap();
}
