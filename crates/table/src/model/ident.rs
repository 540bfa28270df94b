//! [`TableIdent`]: a table's namespace and name.

use serde::{Deserialize, Serialize};

use crate::Result;

/// A table's identity in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableIdent {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl TableIdent {
    /// An identifier.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parse `table` (in namespace `default_ns`) or `namespace.table`.
    pub fn parse(s: &str, default_ns: &str) -> Result<Self> {
        let (ns, name) = match s.split_once('.') {
            Some((ns, n)) => (ns, n),
            None => (default_ns, s),
        };
        crate::names::validate_ident("namespace", ns)?;
        crate::names::validate_ident("table", name)?;
        Ok(Self::new(ns, name))
    }

    /// `namespace/name`, the table's root in every tier.
    pub fn root(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for TableIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}
