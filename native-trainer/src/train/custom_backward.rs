//! Differentiable functions with a backward pass of our own, for the fused ops that keep
//! training's memory down. candle's autograd keeps every intermediate tensor of a chain of
//! small ops alive until the backward pass ends; a function attached here keeps only its
//! arguments and its output, and its backward pass recomputes whatever else it needs.
//!
//! The forward value is computed first with ordinary tensor ops on detached arguments (so it
//! runs on whatever device the arguments live on, CPU or CUDA), then placed on the graph as
//! the output of a custom op over the arguments: the op's forward copies the value's storage
//! (one output-sized copy, freed with the value), and its backward calls `Backward`.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage,
    Tensor,
};

/// The backward pass of a function attached with `attach`.
pub trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The gradient of each argument (in `args`' order) from the output and the output's
    /// gradient. `None` where an argument needs none; arguments that do not track gradients
    /// are given none whatever this returns.
    fn backward(
        &self,
        args: &[&Tensor],
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>>;
}

/// `value`, computed from `args` (one to three tensors) without a graph, as a function of
/// them whose gradients `backward` gives. Without a tracked argument it is `value` itself.
pub fn attach<B: Backward>(value: Tensor, args: &[&Tensor], backward: B) -> Result<Tensor> {
    if !args.iter().any(|a| a.track_op()) {
        return Ok(value);
    }
    let compact = value.is_contiguous() && value.layout().start_offset() == 0;
    let value = if compact { value } else { value.copy()? };
    let op = Attached {
        value: Mutex::new(Some(value)),
        backward,
    };
    match args {
        [a] => a.apply_op1(op),
        [a, b] => a.apply_op2(b, op),
        [a, b, c] => a.apply_op3(b, c, op),
        _ => candle_core::bail!("attach: {} arguments (one to three)", args.len()),
    }
}

struct Attached<B> {
    /// The forward value, taken by the op's forward.
    value: Mutex<Option<Tensor>>,
    backward: B,
}

impl<B: Backward> Attached<B> {
    fn take(&self) -> Result<Tensor> {
        self.value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: forward ran twice", self.name())))
    }

    fn name(&self) -> &'static str {
        self.backward.name()
    }

    fn cpu_value(&self) -> Result<(CpuStorage, Shape)> {
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, value.shape().clone())),
            _ => candle_core::bail!("{}: the value is not on the CPU", self.name()),
        }
    }

    fn cuda_value(&self) -> Result<(CudaStorage, Shape)> {
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, value.shape().clone())),
            _ => candle_core::bail!("{}: the value is not on the GPU", self.name()),
        }
    }

    /// Gradients for `args`, none for those that do not track.
    fn gradients(
        &self,
        args: &[&Tensor],
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let mut grads = self.backward.backward(args, output, grad)?;
        grads.resize(args.len(), None);
        for (gradient, arg) in grads.iter_mut().zip(args) {
            if !arg.track_op() {
                *gradient = None;
            }
        }
        Ok(grads)
    }
}

impl<B: Backward> CustomOp1 for Attached<B> {
    fn name(&self) -> &'static str {
        self.backward.name()
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_value()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.cuda_value()
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.gradients(&[arg], res, grad)?.remove(0))
    }
}

impl<B: Backward> CustomOp2 for Attached<B> {
    fn name(&self) -> &'static str {
        self.backward.name()
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_value()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda_value()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut grads = self.gradients(&[a, b], res, grad)?.into_iter();
        Ok((grads.next().flatten(), grads.next().flatten()))
    }
}

impl<B: Backward> CustomOp3 for Attached<B> {
    fn name(&self) -> &'static str {
        self.backward.name()
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_value()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda_value()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut grads = self.gradients(&[a, b, c], res, grad)?.into_iter();
        Ok((
            grads.next().flatten(),
            grads.next().flatten(),
            grads.next().flatten(),
        ))
    }
}
