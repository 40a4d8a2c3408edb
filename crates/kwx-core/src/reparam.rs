//! Attaching a prepared reparameterization (a LoRA adapter, [`TokenRows`](crate::TokenRows)) to
//! a module's weight.

use burn::module::{Param, Reparameterization, Reparameterizer};
use burn::tensor::Tensor;

/// Hands one prepared reparameterization to the single 2-D `weight` of the module it is applied
/// to (`module.apply_reparameterization(OnWeight::new(r))`); every other parameter is left as it
/// is. Applied to a `Linear` it reaches `weight`, to an `Embedding` its table.
#[derive(Debug)]
pub struct OnWeight<R>(Option<R>);

impl<R> OnWeight<R> {
    /// `reparam`, for the next `weight` the module traversal meets.
    pub fn new(reparam: R) -> Self {
        Self(Some(reparam))
    }
}

impl<R: Reparameterization> Reparameterizer for OnWeight<R> {
    type Reparam = R;
    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<R>) {
        let take = D == 2 && path == "weight";
        (param, if take { self.0.take() } else { None })
    }
}
