//! The row filter of a policy as its own plan node.
//!
//! A plain `FilterExec` would let DataFusion's filter pushdown merge the session's own
//! conditions into it (`user_condition AND policy`), evaluating them on rows the policy hides:
//! a condition that fails on some value (`100 / (amount - 30)`) would then reveal, by its
//! error, that a hidden row holds it. This node runs a `FilterExec` but keeps every condition
//! of its parents above it. It still hands those conditions to the scan below for pruning by
//! statistics (which evaluates nothing on rows), unless the session turned on Parquet filter
//! pushdown, which would evaluate them on rows inside the reader.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};

/// Rows of the input for which the policy's predicate holds; conditions of the plan above never
/// run below (or merged into) it.
#[derive(Debug)]
pub(crate) struct PolicyFilterExec {
    filter: Arc<FilterExec>,
}

impl PolicyFilterExec {
    pub(crate) fn try_new(predicate: Arc<dyn PhysicalExpr>, input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        Ok(Self {
            filter: Arc::new(FilterExec::try_new(predicate, input)?),
        })
    }
}

impl DisplayAs for PolicyFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyFilterExec: {}", self.filter.predicate())
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
        vec![true]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "PolicyFilterExec has one input, not {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::try_new(
            self.filter.predicate().clone(),
            children.swap_remove(0),
        )?))
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
        let input = self.filter.input();
        let child = if config.execution.parquet.pushdown_filters {
            ChildFilterDescription::all_unsupported(&parent_filters)
        } else {
            ChildFilterDescription::from_child(&parent_filters, input)?
        };
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
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // Whatever the scan took (for pruning), the parents keep evaluating their conditions
        // above the policy.
        Ok(FilterPushdownPropagation::all_unsupported(child_pushdown_result))
    }
}
