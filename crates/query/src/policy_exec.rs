//! The row filter of a policy as its own plan node.
//!
//! A plain `FilterExec` would let DataFusion's filter pushdown merge the session's own
//! conditions into it (`user_condition AND policy`), evaluating them on rows the policy hides:
//! a condition that fails on some value (`100 / (amount - 30)`) would then reveal, by its
//! error, that a hidden row holds it. This node runs a `FilterExec` but keeps the conditions of
//! its parents above it, except those that cannot fail on any value (comparisons of columns
//! with literals and the like), which it evaluates ahead of the policy so that the policy runs
//! only on the rows they keep. It hands the parents' conditions to the scan below for pruning
//! by statistics (which evaluates nothing on rows), unless Parquet filter pushdown is on, which
//! would evaluate them on rows inside the reader. It does not let a sort move below it either.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr,
};
use datafusion::physical_expr::{conjunction, split_conjunction};
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};

/// Rows of the input for which the policy's predicate holds; conditions of the plan above never
/// run below (or merged into) it.
#[derive(Debug)]
pub(crate) struct PolicyFilterExec {
    filter: Arc<FilterExec>,
    /// Input columns passed on (a narrowing projection above taken in, as `FilterExec` does,
    /// so that rows are copied with only the columns the plan still needs).
    projection: Option<Vec<usize>>,
}

impl PolicyFilterExec {
    pub(crate) fn try_new(predicate: Arc<dyn PhysicalExpr>, input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        Self::build(predicate, input, None)
    }

    fn build(
        predicate: Arc<dyn PhysicalExpr>,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let filter = FilterExecBuilder::new(predicate, input)
            .apply_projection(projection.clone())?
            .build()?;
        Ok(Self {
            filter: Arc::new(filter),
            projection,
        })
    }
}

impl DisplayAs for PolicyFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyFilterExec: {}", self.filter.predicate())?;
        if let Some(p) = &self.projection {
            let names: Vec<String> = p
                .iter()
                .map(|i| self.filter.input().schema().field(*i).name().clone())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for PolicyFilterExec {
    fn name(&self) -> &str {
        "PolicyFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.filter.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.filter.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.filter.apply_expressions(f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // It does keep the order, but saying so would let DataFusion's sort pushdown move a
        // sort (and its expressions) below the policy, onto rows it hides.
        vec![false]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "PolicyFilterExec has one input, not {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::build(
            self.filter.predicate().clone(),
            children.swap_remove(0),
            self.projection.clone(),
        )?))
    }

    fn try_swapping_with_projection(&self, projection: &ProjectionExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // Only a plain choice of columns (it evaluates nothing) is taken in; anything computed
        // stays above the policy.
        if self.projection.is_some() {
            return Ok(None);
        }
        let mut keep = Vec::with_capacity(projection.expr().len());
        for e in projection.expr() {
            match e.expr.downcast_ref::<Column>() {
                Some(c) if c.name() == e.alias => keep.push(c.index()),
                _ => return Ok(None),
            }
        }
        let node = Self::build(self.filter.predicate().clone(), self.filter.input().clone(), Some(keep))?;
        Ok(Some(Arc::new(node)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.filter.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.filter.metrics()
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.filter.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.filter.statistics_from_inputs(input_stats, args)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::LowerEqual
    }

    fn gather_filters_for_pushdown(
        &self,
        phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        if config.execution.parquet.pushdown_filters {
            // the scan would evaluate whatever it is handed row by row: hand it nothing
            return Ok(FilterDescription::new().with_child(ChildFilterDescription::all_unsupported(&parent_filters)));
        }
        let child = ChildFilterDescription::from_child(&parent_filters, self.filter.input())?;
        // The policy's own conditions may go into the scan (they are meant to see every row).
        let child = if phase == FilterPushdownPhase::Pre {
            child.with_self_filters(
                split_conjunction(self.filter.predicate())
                    .into_iter()
                    .cloned()
                    .collect(),
            )
        } else {
            child
        };
        Ok(FilterDescription::new().with_child(child))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // (parent conditions are in output columns: only taken in while those are the input's)
        // (and only while the policy itself cannot fail: otherwise the session's conditions
        // would choose which hidden rows reach a policy error)
        if phase != FilterPushdownPhase::Pre
            || config.execution.parquet.pushdown_filters
            || self.projection.is_some()
            || !cannot_fail(self.filter.predicate())
        {
            return Ok(FilterPushdownPropagation::all_unsupported(child_pushdown_result));
        }
        // A parent condition that cannot fail on any value (comparisons of columns and
        // literals, AND/OR/NOT, IS NULL, IN and LIKE over literals) reveals nothing when it
        // sees a hidden row: it is taken in, ahead of the policy, so that the policy runs only
        // on the rows it keeps. Every other condition stays above.
        let mut taken = Vec::new();
        let verdicts: Vec<PushedDown> = child_pushdown_result
            .parent_filters
            .iter()
            .map(|f| {
                if cannot_fail(&f.filter) {
                    taken.push(f.filter.clone());
                    PushedDown::Yes
                } else {
                    PushedDown::No
                }
            })
            .collect();
        let propagation = FilterPushdownPropagation::with_parent_pushdown_result(verdicts);
        if taken.is_empty() {
            return Ok(propagation);
        }
        taken.push(self.filter.predicate().clone());
        let node = Self::build(conjunction(taken), self.filter.input().clone(), None)?;
        Ok(propagation.with_updated_node(Arc::new(node)))
    }
}

/// Whether evaluating `e` on any row can neither fail nor reveal anything but its boolean
/// outcome: no arithmetic, casts or functions, whose errors depend on the values.
pub(crate) fn cannot_fail(e: &Arc<dyn PhysicalExpr>) -> bool {
    use datafusion::logical_expr::Operator;
    if e.downcast_ref::<Column>().is_some() || e.downcast_ref::<Literal>().is_some() {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        return matches!(
            b.op(),
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
        ) && cannot_fail(b.left())
            && cannot_fail(b.right());
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        return cannot_fail(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        return cannot_fail(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        return cannot_fail(n.arg());
    }
    if let Some(l) = e.downcast_ref::<InListExpr>() {
        return cannot_fail(l.expr()) && l.list().iter().all(|x| x.downcast_ref::<Literal>().is_some());
    }
    if let Some(l) = e.downcast_ref::<LikeExpr>() {
        return cannot_fail(l.expr()) && l.pattern().downcast_ref::<Literal>().is_some();
    }
    false
}

/// A policy's own expression (a row filter that can fail, a mask): an error it raises on a
/// stored value could quote that value (`Cannot cast string '123-45-6789'`), so the session gets
/// a generic error and the log the failing expression, never the value.
#[derive(Debug)]
pub(crate) struct Guarded {
    inner: Arc<dyn PhysicalExpr>,
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner)
    }
}

impl Eq for Guarded {}

impl std::hash::Hash for Guarded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl Guarded {
    pub(crate) fn wrap(inner: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        if cannot_fail(&inner) {
            return inner;
        }
        Arc::new(Self { inner })
    }
}

impl fmt::Display for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for Guarded {
    fn return_field(&self, input_schema: &arrow::datatypes::Schema) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &arrow::array::RecordBatch) -> Result<datafusion::logical_expr::ColumnarValue> {
        // The error's text may quote the value: it reaches neither the session nor the log
        // (data values stay out of logs); the log names the expression, which an administrator
        // can evaluate over the table to find the failing rows.
        self.inner.evaluate(batch).map_err(|_| {
            tracing::warn!(expression = %self.inner, "a row filter or mask failed on a stored value");
            datafusion::error::DataFusionError::Execution(
                "a row filter or mask failed on a stored value; an administrator must fix the policy (the log names its expression)"
                    .into(),
            )
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Self {
            inner: children.swap_remove(0),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}
