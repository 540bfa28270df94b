//! Reading files written before a schema change: the scan's expressions are adapted per file.
//! Renamed columns are read under the name the file holds them by; columns added later read as
//! their default (or NULL); widened columns are cast (DataFusion's default adapter does that
//! and the NULLs).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result as DFResult, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, lit};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use stratalake_table::TableSchema;

/// Per-column history the adapter needs: earlier names, and the default of added columns.
#[derive(Debug, Clone)]
pub(crate) struct Evolved {
    columns: Vec<(String, Vec<String>, Option<ScalarValue>)>,
}

impl Evolved {
    /// `None` when no column was renamed or added with a default (the default adapter suffices).
    pub(crate) fn of(schema: &TableSchema) -> DFResult<Option<Self>> {
        if schema
            .columns
            .iter()
            .all(|c| c.aliases.is_empty() && c.default.is_none())
        {
            return Ok(None);
        }
        let mut columns = Vec::new();
        for c in &schema.columns {
            let default = c
                .default
                .as_ref()
                .map(|d| ScalarValue::try_from_string(d.clone(), &c.data_type))
                .transpose()?;
            columns.push((c.name.clone(), c.aliases.clone(), default));
        }
        Ok(Some(Self { columns }))
    }
}

impl PhysicalExprAdapterFactory for Evolved {
    fn create(&self, logical: SchemaRef, physical: SchemaRef) -> DFResult<Arc<dyn PhysicalExprAdapter>> {
        let mut renames: HashMap<String, String> = HashMap::new();
        let mut defaults: HashMap<String, ScalarValue> = HashMap::new();
        for (name, aliases, default) in &self.columns {
            if physical.index_of(name).is_ok() {
                continue;
            }
            match aliases.iter().rev().find(|a| physical.index_of(a).is_ok()) {
                Some(a) => {
                    renames.insert(name.clone(), a.clone());
                }
                None => {
                    if let Some(d) = default {
                        defaults.insert(name.clone(), d.clone());
                    }
                }
            }
        }
        // The file's schema with renamed columns under their current names, for the default
        // adapter (casts, missing columns); names are given back afterwards.
        let renamed = Schema::new(
            physical
                .fields()
                .iter()
                .map(|f| match renames.iter().find(|(_, p)| *p == f.name()) {
                    Some((l, _)) => f.as_ref().clone().with_name(l),
                    None => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        );
        let inner = DefaultPhysicalExprAdapterFactory.create(logical, Arc::new(renamed))?;
        Ok(Arc::new(EvolvedAdapter {
            inner,
            renames,
            defaults,
        }))
    }
}

#[derive(Debug)]
struct EvolvedAdapter {
    inner: Arc<dyn PhysicalExprAdapter>,
    renames: HashMap<String, String>,
    defaults: HashMap<String, ScalarValue>,
}

impl PhysicalExprAdapter for EvolvedAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DFResult<Arc<dyn PhysicalExpr>> {
        let with_defaults = expr
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>()
                    && let Some(v) = self.defaults.get(c.name())
                {
                    return Ok(Transformed::yes(lit(v.clone())));
                }
                Ok(Transformed::no(e))
            })
            .data()?;
        self.inner
            .rewrite(with_defaults)?
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>()
                    && let Some(p) = self.renames.get(c.name())
                {
                    return Ok(Transformed::yes(
                        Arc::new(Column::new(p, c.index())) as Arc<dyn PhysicalExpr>
                    ));
                }
                Ok(Transformed::no(e))
            })
            .data()
    }
}
