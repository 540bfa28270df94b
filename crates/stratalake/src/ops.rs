//! What the operation builders share: progress callbacks and the step from a builder to the
//! future that runs it.

use stratalake_table::progress::Progress;

/// A progress callback held by a builder.
pub(crate) type OnProgress<'a> = Box<dyn Fn(Progress) + Send + Sync + 'a>;

/// The callback of a builder that was given none.
pub(crate) fn quiet<'a>() -> OnProgress<'a> {
    Box::new(|_| {})
}

/// `impl IntoFuture` for an operation builder with an `async fn run(self) -> Result<T>`: the
/// builder is awaited directly (`lake.vacuum("t").dry_run(true).await`).
macro_rules! into_future {
    ($builder:ident => $out:ty) => {
        impl<'a> std::future::IntoFuture for $builder<'a> {
            type Output = $crate::Result<$out>;
            type IntoFuture = futures::future::BoxFuture<'a, $crate::Result<$out>>;
            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.run())
            }
        }
    };
}
pub(crate) use into_future;
