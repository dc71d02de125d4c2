//! [`FusedOps`] on burn's autodiff backend: each op is one graph node whose backward pass
//! calls the inner backend's gradient kernel. What the backward needs is kept as inner
//! tensors in the node's state (as PyTorch saves tensors for backward).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::ops::FloatTensor;

use super::FusedOps;

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluTanh;

        impl<B: FusedOps> Backward<B, 1> for GeluTanh {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::fused_gelu_tanh_backward(x, dy)
                });
            }
        }

        match GeluTanh
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_gelu_tanh(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu_tanh(x.primitive)),
        }
    }

    fn fused_layer_norm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNorm;

        impl<B: FusedOps> Backward<B, 1> for LayerNorm {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (y, rstd) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::fused_layer_norm_backward(y, rstd, dy)
                });
            }
        }

        match LayerNorm
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, rstd) = B::fused_layer_norm_with_rstd(x.primitive, eps);
                prep.finish((y.clone(), rstd), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(x.primitive, eps)),
        }
    }

    fn fused_scale_shift(
        x: FloatTensor<Self>,
        m: FloatTensor<Self>,
        a: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        /// x·m + a: parents x, m, a.
        #[derive(Debug)]
        struct ScaleShift;
        /// x·m: parents x, m.
        #[derive(Debug)]
        struct Scale;

        impl<B: FusedOps> Backward<B, 3> for ScaleShift {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, m) = ops.state;
                let dy = grads.consume::<B>(&ops.node);
                let (dx, dm, da) = B::fused_scale_shift_backward(x, m, dy);
                let [px, pm, pa] = ops.parents;
                for (parent, g) in [(px, dx), (pm, dm), (pa, da)] {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        impl<B: FusedOps> Backward<B, 2> for Scale {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, m) = ops.state;
                let dy = grads.consume::<B>(&ops.node);
                let (dx, dm, _) = B::fused_scale_shift_backward(x, m, dy);
                let [px, pm] = ops.parents;
                for (parent, g) in [(px, dx), (pm, dm)] {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        match a {
            Some(a) => match ScaleShift
                .prepare::<C>([x.node.clone(), m.node.clone(), a.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::fused_scale_shift(
                        x.primitive.clone(),
                        m.primitive.clone(),
                        Some(a.primitive),
                    );
                    prep.finish((x.primitive, m.primitive), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::fused_scale_shift(
                    x.primitive,
                    m.primitive,
                    Some(a.primitive),
                )),
            },
            None => match Scale
                .prepare::<C>([x.node.clone(), m.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::fused_scale_shift(x.primitive.clone(), m.primitive.clone(), None);
                    prep.finish((x.primitive, m.primitive), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::fused_scale_shift(x.primitive, m.primitive, None))
                }
            },
        }
    }

    fn fused_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        mask: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Attention;

        impl<B: FusedOps> Backward<B, 1> for Attention {
            type State = (FloatTensor<B>, FloatTensor<B>, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (qkv, probs, heads) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                    B::fused_attention_backward(qkv, probs, dy, heads)
                });
            }
        }

        // The mask is a constant of the model (a buffer): it gets no gradient.
        let mask = mask.map(|m| m.primitive);
        match Attention
            .prepare::<C>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) =
                    B::fused_attention_with_probs(qkv.primitive.clone(), heads, mask);
                prep.finish((qkv.primitive, probs, heads), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(qkv.primitive, heads, mask)),
        }
    }

    fn fused_segment_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        sizes: &[usize],
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SegmentLinear;

        impl<B: FusedOps> Backward<B, 3> for SegmentLinear {
            type State = (FloatTensor<B>, FloatTensor<B>, Vec<usize>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, w, sizes) = ops.state;
                let dz = grads.consume::<B>(&ops.node);
                let (dx, dw, db) = B::fused_segment_linear_backward(x, w, dz, &sizes);
                let [px, pw, pb] = ops.parents;
                for (parent, g) in [(px, dx), (pw, dw), (pb, db)] {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        match SegmentLinear
            .prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let z = B::fused_segment_linear(
                    x.primitive.clone(),
                    w.primitive.clone(),
                    b.primitive,
                    sizes,
                );
                prep.finish((x.primitive, w.primitive, sizes.to_vec()), z)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_segment_linear(
                x.primitive,
                w.primitive,
                b.primitive,
                sizes,
            )),
        }
    }
}
