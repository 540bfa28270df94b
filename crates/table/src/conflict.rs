//! The commit conflict rules (`docs/format.md` §6): whether a commit that won a race for a
//! version invalidates ours. This is the only place they are decided; [`crate::table::Table::commit`]
//! asks [`ConflictCheck::against`] for every commit that landed between the version a writer read
//! and the one it finally takes.
//!
//! For each action of a winning commit `W`:
//!
//! | action in `W` | conflicts with our commit when |
//! |---|---|
//! | `metadata` | always |
//! | `remove` of path p | we also remove p, or our read scope is the whole table, or our commit contains `metadata` |
//! | `add` of file f | our read scope is the whole table, or our commit contains `metadata`, or f's partition map is in our scope's partition maps |
//! | `move` of path p | we also move p |
//! | `rekey` | never |
//!
//! "We remove p" includes our `rekey` and `move` actions on p: a key rotation or a move conflicts
//! with a concurrent commit that removed one of its files.
//!
//! What the operations read ([`ReadScope`]): appends, copy-on-write rewrites (`DELETE`, `UPDATE`,
//! `TRUNCATE`, `MERGE`), rekeys and moves read nothing beyond the files they remove; `OVERWRITE`,
//! writes to a table with a UNIQUE constraint and metadata changes (`CLASSIFY`, constraints,
//! schema changes) read the whole table; `OVERWRITE PARTITIONS` reads the partitions it replaces.
//! So appends conflict only with a concurrent metadata change, two rewrites conflict when they
//! remove the same file, and a rewrite does not conflict with a concurrent append.

use std::collections::BTreeSet;

use crate::action::{Action, Commit, PartitionValues};
use crate::{Error, Result};

/// What a commit read, to decide whether a concurrent commit conflicts with it.
#[derive(Clone, Debug, Default)]
pub struct ReadScope {
    /// The whole table was read (overwrite of everything, metadata change).
    pub whole_table: bool,
    /// Partitions read (partition overwrite).
    pub partitions: BTreeSet<PartitionValues>,
}

/// Our commit's dependencies, from its actions and read scope, checked against winners.
#[derive(Debug)]
pub struct ConflictCheck<'a> {
    /// Files ours removes, re-keys or moves.
    removes: BTreeSet<&'a str>,
    /// Files ours moves.
    moves: BTreeSet<&'a str>,
    /// Whether ours changes the metadata.
    changes_meta: bool,
    scope: &'a ReadScope,
}

impl<'a> ConflictCheck<'a> {
    /// The dependencies of a commit of `actions` that read `scope`.
    pub fn new(actions: &'a [Action], scope: &'a ReadScope) -> Self {
        let removes = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(r) => Some(r.path.as_str()),
                Action::Rekey(r) => Some(r.path.as_str()),
                Action::Move(m) => Some(m.path.as_str()),
                _ => None,
            })
            .collect();
        let moves = actions
            .iter()
            .filter_map(|a| match a {
                Action::Move(m) => Some(m.path.as_str()),
                _ => None,
            })
            .collect();
        Self {
            removes,
            moves,
            changes_meta: actions.iter().any(|a| matches!(a, Action::Metadata(_))),
            scope,
        }
    }

    /// `Err(Conflict)` on `table` when `theirs` changed what ours depends on.
    pub fn against(&self, theirs: &Commit, table: &str) -> Result<()> {
        match self.reason(theirs) {
            None => Ok(()),
            Some(reason) => Err(Error::Conflict {
                table: table.to_string(),
                version: theirs.version,
                reason,
            }),
        }
    }

    /// Why `theirs` conflicts with ours (its first conflicting action), or `None`.
    pub fn reason(&self, theirs: &Commit) -> Option<String> {
        theirs
            .actions
            .iter()
            .find_map(|a| self.action_reason(&theirs.info.operation, a))
    }

    /// The rule for one action `a` of a winning commit of operation `op` (the table above).
    fn action_reason(&self, op: &str, a: &Action) -> Option<String> {
        let reads_all = self.scope.whole_table || self.changes_meta;
        match a {
            Action::Metadata(_) => Some(format!("{op} changed the table's metadata")),
            Action::Remove(r) if reads_all || self.removes.contains(r.path.as_str()) => {
                Some(format!("{op} removed file {} that this operation read", r.path))
            }
            Action::Move(m) if self.moves.contains(m.path.as_str()) => {
                Some(format!("{op} moved file {} that this operation moves", m.path))
            }
            Action::Add(f) if reads_all || self.scope.partitions.contains(&f.partition) => {
                Some(format!("{op} added data to a partition this operation replaces"))
            }
            Action::Remove(_) | Action::Move(_) | Action::Add(_) | Action::Rekey(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use stratalake_crypto::{KeyId, WrappedKey};

    use super::*;
    use crate::action::{AddFile, CommitInfo, FileKeys, Metadata, MoveFile, RekeyFile, RemoveFile};
    use crate::schema::TableSchema;

    fn keys() -> FileKeys {
        let key = WrappedKey {
            key: KeyId {
                classification: "public".into(),
                version: 1,
            },
            sealed: String::new(),
        };
        FileKeys {
            footer: key,
            groups: Vec::new(),
        }
    }

    fn part(region: &str) -> PartitionValues {
        BTreeMap::from([("region".to_string(), Some(region.to_string()))])
    }

    fn add(path: &str, region: &str) -> Action {
        Action::Add(AddFile {
            path: path.into(),
            tier: "hot".into(),
            size: 1,
            rows: 1,
            crc32: 0,
            partition: part(region),
            keys: keys(),
            created_ms: 0,
        })
    }

    fn remove(path: &str) -> Action {
        Action::Remove(RemoveFile {
            path: path.into(),
            tier: "hot".into(),
            removed_ms: 0,
        })
    }

    fn rekey(path: &str) -> Action {
        Action::Rekey(RekeyFile {
            path: path.into(),
            keys: keys(),
        })
    }

    fn moved(path: &str) -> Action {
        Action::Move(MoveFile {
            path: path.into(),
            from: "hot".into(),
            to: "cold".into(),
            reason: String::new(),
            copied_ms: None,
        })
    }

    fn metadata() -> Action {
        Action::Metadata(Metadata {
            table_id: "t".into(),
            namespace: "default".into(),
            name: "permits".into(),
            schema: TableSchema {
                columns: Vec::new(),
                partition_by: Vec::new(),
            },
            properties: BTreeMap::new(),
            constraints: Vec::new(),
            retired_columns: Vec::new(),
            created_ms: 0,
        })
    }

    fn winner(op: &str, actions: Vec<Action>) -> Commit {
        Commit {
            version: 7,
            info: CommitInfo {
                timestamp_ms: 0,
                principal: "other".into(),
                operation: op.into(),
                token: "theirs".into(),
                parameters: BTreeMap::new(),
                quality: None,
            },
            actions,
        }
    }

    fn whole() -> ReadScope {
        ReadScope {
            whole_table: true,
            ..Default::default()
        }
    }

    fn partitions(regions: &[&str]) -> ReadScope {
        ReadScope {
            whole_table: false,
            partitions: regions.iter().map(|r| part(r)).collect(),
        }
    }

    /// The reason `theirs` conflicts with our `actions` that read `scope`.
    fn conflict(ours: &[Action], scope: &ReadScope, theirs: &Commit) -> Option<String> {
        ConflictCheck::new(ours, scope).reason(theirs)
    }

    /// Whether `ours`, reading nothing beyond what it removes, survives `theirs`.
    fn survives(ours: &[Action], theirs: &Commit) -> bool {
        conflict(ours, &ReadScope::default(), theirs).is_none()
    }

    #[test]
    fn metadata_conflicts_with_everything() {
        let theirs = winner("ADD COLUMN", vec![metadata()]);
        let appends = [add("data/new.parquet", "north")];
        let reason = conflict(&appends, &ReadScope::default(), &theirs).expect("an append conflicts");
        assert_eq!(reason, "ADD COLUMN changed the table's metadata");
        assert!(conflict(&[rekey("data/a.parquet")], &ReadScope::default(), &theirs).is_some());
        assert!(conflict(&[metadata()], &whole(), &theirs).is_some());
    }

    #[test]
    fn remove_conflicts_with_our_remove_of_the_same_file() {
        let theirs = winner(
            "DELETE",
            vec![remove("data/a.parquet"), add("data/a2.parquet", "north")],
        );
        let rewrite = [remove("data/a.parquet"), add("data/a3.parquet", "north")];
        let reason = conflict(&rewrite, &ReadScope::default(), &theirs).expect("same file rewritten twice");
        assert_eq!(reason, "DELETE removed file data/a.parquet that this operation read");
        let other = [remove("data/b.parquet"), add("data/b2.parquet", "north")];
        assert!(survives(&other, &theirs));
    }

    #[test]
    fn remove_conflicts_with_a_whole_table_read() {
        let theirs = winner("DELETE", vec![remove("data/a.parquet")]);
        let overwrite = [remove("data/b.parquet"), add("data/c.parquet", "north")];
        assert!(conflict(&overwrite, &whole(), &theirs).is_some());
    }

    #[test]
    fn remove_conflicts_with_our_metadata_change() {
        let theirs = winner("OPTIMIZE", vec![remove("data/a.parquet")]);
        assert!(conflict(&[metadata()], &ReadScope::default(), &theirs).is_some());
    }

    #[test]
    fn remove_conflicts_with_our_rekey_or_move_of_the_file() {
        let theirs = winner("DELETE", vec![remove("data/a.parquet")]);
        assert!(conflict(&[rekey("data/a.parquet")], &ReadScope::default(), &theirs).is_some());
        assert!(conflict(&[moved("data/a.parquet")], &ReadScope::default(), &theirs).is_some());
        assert!(survives(&[rekey("data/b.parquet")], &theirs));
    }

    #[test]
    fn remove_does_not_conflict_with_an_append() {
        let theirs = winner(
            "DELETE",
            vec![remove("data/a.parquet"), add("data/a2.parquet", "north")],
        );
        assert!(survives(&[add("data/new.parquet", "north")], &theirs));
    }

    #[test]
    fn add_conflicts_with_a_whole_table_read() {
        let theirs = winner("APPEND", vec![add("data/new.parquet", "north")]);
        let overwrite = [remove("data/a.parquet"), add("data/b.parquet", "south")];
        let reason = conflict(&overwrite, &whole(), &theirs).expect("an overwrite conflicts");
        assert_eq!(reason, "APPEND added data to a partition this operation replaces");
    }

    #[test]
    fn add_conflicts_with_our_metadata_change() {
        let theirs = winner("APPEND", vec![add("data/new.parquet", "north")]);
        assert!(conflict(&[metadata()], &ReadScope::default(), &theirs).is_some());
    }

    #[test]
    fn add_conflicts_only_in_partitions_we_replace() {
        let theirs = winner("APPEND", vec![add("data/new.parquet", "north")]);
        let replace = [remove("data/a.parquet"), add("data/b.parquet", "north")];
        assert!(conflict(&replace, &partitions(&["north"]), &theirs).is_some());
        assert_eq!(conflict(&replace, &partitions(&["south"]), &theirs), None);
    }

    #[test]
    fn add_does_not_conflict_with_an_append_or_a_rewrite() {
        let theirs = winner("APPEND", vec![add("data/new.parquet", "north")]);
        assert!(survives(&[add("data/mine.parquet", "north")], &theirs));
        let rewrite = [remove("data/a.parquet"), add("data/a2.parquet", "north")];
        assert!(survives(&rewrite, &theirs));
    }

    #[test]
    fn move_conflicts_only_with_our_move_of_the_same_file() {
        let theirs = winner("MOVE", vec![moved("data/a.parquet")]);
        let reason =
            conflict(&[moved("data/a.parquet")], &ReadScope::default(), &theirs).expect("same file moved twice");
        assert_eq!(reason, "MOVE moved file data/a.parquet that this operation moves");
        assert!(survives(&[moved("data/b.parquet")], &theirs));
        assert!(survives(&[rekey("data/a.parquet")], &theirs));
        let rewrite = [remove("data/a.parquet"), add("data/a2.parquet", "north")];
        assert!(survives(&rewrite, &theirs));
    }

    #[test]
    fn rekey_never_conflicts() {
        let theirs = winner("REKEY", vec![rekey("data/a.parquet")]);
        for (ours, scope) in [
            (vec![metadata()], whole()),
            (vec![rekey("data/a.parquet")], ReadScope::default()),
            (vec![remove("data/a.parquet")], whole()),
            (vec![moved("data/a.parquet")], ReadScope::default()),
        ] {
            assert_eq!(conflict(&ours, &scope, &theirs), None, "{ours:?}");
        }
    }

    #[test]
    fn the_error_names_table_version_and_reason() {
        let theirs = winner("ADD COLUMN", vec![metadata()]);
        let ours = [add("data/new.parquet", "north")];
        let scope = ReadScope::default();
        let e = ConflictCheck::new(&ours, &scope)
            .against(&theirs, "default.permits")
            .unwrap_err();
        match e {
            Error::Conflict { table, version, reason } => {
                assert_eq!((table.as_str(), version), ("default.permits", 7));
                assert_eq!(reason, "ADD COLUMN changed the table's metadata");
            }
            e => panic!("{e}"),
        }
    }
}
