//! TransLOB-style transformer (Wallbridge 2020): causal dilated 1-D convolutions, layer norm, a
//! linear positional channel, causally masked transformer encoder blocks, then a flattened MLP
//! head. docs/models.md § transformer.

use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderLayer};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::{quiet_softmax, relu, softmax};

/// Hyperparameters of the transformer. Defaults are the paper's (window 100, five convolutions
/// of 14 filters with dilations 1..16, 3 heads, 2 blocks, a 64-unit head).
#[derive(Config, Debug)]
pub struct TransLobConfig {
    /// Features per time step (set from the data).
    pub d_input: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Window length: the head flattens [window, d_model], so it is fixed at build time.
    #[config(default = 100)]
    pub window: usize,
    /// Filters of each causal convolution; d_model = conv_channels + 1 (the position channel).
    #[config(default = 14)]
    pub conv_channels: usize,
    /// Causal convolutions; layer i has dilation 2^i.
    #[config(default = 5)]
    pub conv_layers: usize,
    /// Kernel width of the causal convolutions.
    #[config(default = 2)]
    pub kernel_size: usize,
    /// Attention heads; must divide d_model.
    #[config(default = 3)]
    pub heads: usize,
    /// Transformer encoder blocks.
    #[config(default = 2)]
    pub depth: usize,
    /// Feed-forward width inside each block; 0 means 4 × d_model.
    #[config(default = 0)]
    pub d_ff: usize,
    /// Hidden units of the MLP head.
    #[config(default = 64)]
    pub mlp_hidden: usize,
    /// Dropout in the encoder blocks and the head (training only).
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// The TransLOB-style network.
#[derive(Module, Debug)]
pub struct TransLob {
    pub convs: Vec<Conv1d>,
    pub norm: LayerNorm,
    pub encoder: TransformerEncoder,
    pub fc1: Linear,
    pub fc2: Linear,
    pub dropout: Dropout,
    pub window: usize,
}

impl TransLobConfig {
    /// Model width seen by attention: the convolution channels plus the position channel.
    pub fn d_model(&self) -> usize {
        self.conv_channels + 1
    }
    /// Feed-forward width actually used.
    pub fn d_ff_resolved(&self) -> usize {
        if self.d_ff == 0 {
            4 * self.d_model()
        } else {
            self.d_ff
        }
    }

    /// Checks the hyperparameters, so a bad TOML value is an error rather than a panic.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [
            ("window", self.window),
            ("conv_channels", self.conv_channels),
            ("conv_layers", self.conv_layers),
            ("kernel_size", self.kernel_size),
            ("heads", self.heads),
            ("depth", self.depth),
            ("mlp_hidden", self.mlp_hidden),
        ] {
            if v == 0 {
                return Err((k, "must be at least 1".into()));
            }
        }
        if self.conv_layers > 16 {
            return Err(("conv_layers", "at most 16 (dilation 2^i)".into()));
        }
        if !self.d_model().is_multiple_of(self.heads) {
            return Err(("heads", format!("must divide d_model = conv_channels + 1 = {}", self.d_model())));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> TransLob {
        let c = self.conv_channels;
        let convs = (0..self.conv_layers)
            .map(|i| {
                let dilation = 1usize << i;
                let c_in = if i == 0 { self.d_input } else { c };
                // Causal: pad only on the left, by the receptive field of the kernel.
                Conv1dConfig::new(c_in, c, self.kernel_size)
                    .with_dilation(dilation)
                    .with_padding(PaddingConfig1d::Explicit(dilation * (self.kernel_size - 1), 0))
                    .init(device)
            })
            .collect();
        let d_model = self.d_model();
        TransLob {
            convs,
            norm: LayerNormConfig::new(c).init(device),
            encoder: TransformerEncoderConfig::new(d_model, self.d_ff_resolved(), self.heads, self.depth)
                .with_dropout(self.dropout)
                .init(device),
            fc1: LinearConfig::new(self.window * d_model, self.mlp_hidden).init(device),
            fc2: LinearConfig::new(self.mlp_hidden, self.n_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            window: self.window,
        }
    }
}

impl TransLob {
    /// [batch, window, features] → logits [batch, classes]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, seq, _] = x.dims();
        assert_eq!(seq, self.window, "transformer was built for windows of {} steps, got {seq}", self.window);
        let device = x.device();
        let mut h = x.swap_dims(1, 2); // [batch, features, T]
        for conv in &self.convs {
            h = relu(conv.forward(h)); // [batch, C, T]
        }
        let h = self.norm.forward(h.swap_dims(1, 2)); // [batch, T, C]
        let pos = position_channel(seq, &device).expand([batch, seq, 1]); // [batch, T, 1]
        let h = Tensor::cat(vec![h, pos], 2); // [batch, T, C+1]
        let h = match fused_encoder(&self.encoder, &h) {
            Some(h) => h,
            None => encoder_forward(&self.encoder, h, &generate_autoregressive_mask(batch, seq, &device)),
        }; // [batch, T, d]
        let [_, _, d] = h.dims();
        let h = h.reshape([batch, seq * d]); // [batch, T·d]
        let h = crate::dropout::forward(&self.dropout, relu(self.fc1.forward(h))); // [batch, mlp_hidden]
        self.fc2.forward(h) // [batch, classes]
    }
}

/// burn's `TransformerEncoder::forward` with a mask, layer for layer and op for op (the same
/// parameters and arithmetic), except that every dropout draws its mask through
/// [`crate::dropout`] (burn's per-element generator dominated training), the masked softmax is
/// [`crate::softmax_op`] and GELU [`crate::gelu_op`] on the CPU backend.
fn encoder_forward(encoder: &TransformerEncoder, x: Tensor<3>, mask: &Tensor<3, Bool>) -> Tensor<3> {
    encoder.layers.iter().fold(x, |x, layer| encoder_layer(layer, x, mask))
}

/// `FLOWCAST_FUSED_ENCODER=0` in the environment keeps inference on burn's ops (see
/// [`fused_encoder`]), so one binary times both paths.
fn fused_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FLOWCAST_FUSED_ENCODER").map_or(true, |v| v.trim() != "0"))
}

/// Inference on the CPU backend (no autodiff): the causally masked encoder through
/// flowcast-serve's fused layer kernel ([`flowcast_serve::fast::encoder_stack`], the one the
/// server runs), reading this module's parameters. burn's ops materialise the
/// [batch, heads, T, T] scores several times over (scale, mask, softmax, dropout) and run GELU
/// through scalar `erff`; the kernel keeps one sample's [T, T] scores in cache. `None` where it
/// does not apply (autodiff, another backend, a layer variant it does not compute): the caller
/// takes [`encoder_forward`]. [batch, T, d] → [batch, T, d]
fn fused_encoder(encoder: &TransformerEncoder, x: &Tensor<3>) -> Option<Tensor<3>> {
    use crate::rnn_op::{contiguous, f32s, flex};
    use burn::backend::Flex;
    use burn::nn::activation::Activation;
    if x.device().is_autodiff() || !fused_enabled() {
        return None;
    }
    let [batch, seq, d] = x.dims();
    let heads = encoder.n_heads;
    let host = |t: Tensor<1>| -> Option<Vec<f32>> {
        let p = contiguous(t.try_into_primitive::<Flex>().ok()?);
        (p.dtype() == burn::tensor::DType::F32).then(|| f32s(&p).to_vec())
    };
    let linear = |l: &Linear| -> Option<(Vec<f32>, Vec<f32>)> {
        let [d_in, d_out] = l.weight.val().dims();
        let b = match &l.bias {
            Some(b) => host(b.val())?,
            None => vec![0.0; d_out],
        };
        Some((host(l.weight.val().reshape([d_in * d_out]))?, b))
    };
    let norm = |n: &LayerNorm| -> Option<(Vec<f32>, Vec<f32>)> {
        let g = host(n.gamma.val())?;
        let b = match &n.beta {
            Some(b) => host(b.val())?,
            None => vec![0.0; g.len()],
        };
        Some((g, b))
    };
    let mut owned = Vec::with_capacity(encoder.layers.len());
    for l in &encoder.layers {
        let m = &l.mha;
        if l.norm_first
            || m.quiet_softmax
            || m.n_heads != heads
            || m.n_heads * m.d_k != d
            || !matches!(l.pwff.activation, Activation::Gelu(_))
        {
            return None;
        }
        let (q, k, v) = (linear(&m.query)?, linear(&m.key)?, linear(&m.value)?);
        let mut qkv = Vec::with_capacity(3 * d * d);
        for r in 0..d {
            for w in [&q.0, &k.0, &v.0] {
                qkv.extend_from_slice(&w[r * d..(r + 1) * d]);
            }
        }
        let qkv_b = [q.1, k.1, v.1].concat();
        owned.push((
            (qkv, qkv_b),
            linear(&m.output)?,
            linear(&l.pwff.linear_inner)?,
            linear(&l.pwff.linear_outer)?,
            norm(&l.norm_1)?,
            norm(&l.norm_2)?,
        ));
    }
    fn pair(p: &(Vec<f32>, Vec<f32>)) -> (&[f32], &[f32]) {
        (&p.0, &p.1)
    }
    let layers: Vec<_> = owned
        .iter()
        .map(|(qkv, o, inner, outer, n1, n2)| flowcast_serve::fast::EncoderLayer {
            qkv: pair(qkv),
            o: pair(o),
            inner: pair(inner),
            outer: pair(outer),
            norm_1: pair(n1),
            norm_2: pair(n2),
        })
        .collect();
    let xp = contiguous(x.clone().try_into_primitive::<Flex>().ok()?);
    if xp.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let mut h = f32s(&xp).to_vec();
    flowcast_serve::fast::encoder_stack(&layers, &mut h, batch, seq, heads);
    Some(Tensor::from_primitive::<Flex>(flex(h, [batch, seq, d])))
}

/// `TransformerEncoderLayer::forward` (burn-nn 0.22.1). [batch, T, d] → [batch, T, d]
fn encoder_layer(l: &TransformerEncoderLayer, x: Tensor<3>, mask: &Tensor<3, Bool>) -> Tensor<3> {
    let residual = if l.norm_first { l.norm_2.forward(x.clone()) } else { x.clone() };
    let residual = crate::dropout::forward(&l.dropout, self_attention(&l.mha, residual, mask));
    let mut x = x + residual;
    let residual = if l.norm_first {
        l.norm_1.forward(x.clone())
    } else {
        x = l.norm_1.forward(x);
        x.clone()
    };
    let ff = &l.pwff;
    let inner = ff.linear_inner.forward(residual);
    let fused = match ff.activation {
        burn::nn::activation::Activation::Gelu(_) => crate::gelu_op::gelu(&inner),
        _ => None,
    };
    let residual = fused.unwrap_or_else(|| ff.activation.forward(inner));
    let residual = ff.linear_outer.forward(crate::dropout::forward(&ff.dropout, residual));
    let x = x + crate::dropout::forward(&l.dropout, residual);
    if l.norm_first {
        x
    } else {
        l.norm_2.forward(x)
    }
}

/// `MultiHeadAttention::forward` on self-attention with an attention mask. [batch, T, d] →
/// [batch, T, d]
fn self_attention(m: &MultiHeadAttention, x: Tensor<3>, mask: &Tensor<3, Bool>) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let heads = |l: &Linear| l.forward(x.clone()).reshape([batch, seq, m.n_heads, m.d_k]).swap_dims(1, 2); // [batch, H, T, d_k]
    let (q, k, v) = (heads(&m.query), heads(&m.key), heads(&m.value));
    let scores = q.matmul(k.transpose()).div_scalar((m.d_k as f32).sqrt()); // [batch, H, T, T]
    let [mb, s1, s2] = mask.dims();
    let fused = if m.quiet_softmax { None } else { crate::softmax_op::masked_softmax(&scores, mask) };
    let weights = fused.unwrap_or_else(|| {
        let scores = scores.mask_fill(mask.clone().reshape([mb, 1, s1, s2]), m.min_float);
        if m.quiet_softmax {
            quiet_softmax(scores, 3)
        } else {
            softmax(scores, 3)
        }
    });
    let weights = crate::dropout::forward(&m.dropout, weights);
    let context = weights.matmul(v).swap_dims(1, 2).reshape([batch, seq, d]); // [batch, T, d]
    m.output.forward(context)
}

/// TransLOB's positional encoding: the time index mapped linearly onto [-1, 1], as one extra
/// channel. [1, T, 1]
fn position_channel(seq: usize, device: &Device) -> Tensor<3> {
    let denom = (seq.max(2) - 1) as f32;
    let pos: Vec<f32> = (0..seq).map(|t| -1.0 + 2.0 * t as f32 / denom).collect();
    Tensor::<1>::from_floats(pos.as_slice(), device).reshape([1, seq, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::TransformerEncoderInput;
    use burn::tensor::Distribution;

    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        assert!(b.iter().any(|v| *v != 0.0), "{what}: the reference is all zeros");
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "{what}: max |Δ|/(1+|ref|) = {d}");
    }

    /// The encoder forward equals burn's `TransformerEncoder::forward` (to 1e-5: the masked
    /// softmax takes the serving kernels' `expf`): at inference, and in training with dropout 0
    /// (outputs, the input gradient and a weight gradient), so only the dropout masks' generator
    /// differs otherwise.
    #[test]
    fn encoder_forward_is_burns() {
        for (device, p) in [(Device::flex(), 0.1), (Device::flex().autodiff(), 0.0)] {
            let enc = TransformerEncoderConfig::new(15, 60, 3, 2).with_dropout(p).init(&device);
            let x = Tensor::<3>::random([4, 12, 15], Distribution::Normal(0.0, 1.0), &device);
            let x = if device.is_autodiff() { x.require_grad() } else { x };
            let mask = generate_autoregressive_mask(4, 12, &device);
            let ours = encoder_forward(&enc, x.clone(), &mask);
            let burns = enc.forward(TransformerEncoderInput::new(x.clone()).mask_attn(mask));
            if device.is_autodiff() {
                let (go, gb) = (ours.clone().sum().backward(), burns.clone().sum().backward());
                let w = &enc.layers[1].mha.query.weight;
                close(w.val().grad(&go).unwrap(), w.val().grad(&gb).unwrap(), "query weight gradient");
                close(x.grad(&go).unwrap(), x.grad(&gb).unwrap(), "input gradient");
            }
            close(ours, burns, "outputs");
        }
    }

    /// Inference through the fused encoder kernel equals burn's own `TransformerEncoder` with
    /// the causal mask (to 1e-5), over several shapes; the fused path must actually be taken.
    #[test]
    fn fused_inference_encoder_is_burns() {
        let device = Device::flex();
        for (batch, seq, d, heads, ff, depth) in [(3, 12, 15, 3, 60, 2), (9, 100, 15, 3, 60, 2), (2, 7, 8, 2, 16, 1)] {
            let enc = TransformerEncoderConfig::new(d, ff, heads, depth).with_dropout(0.1).init(&device);
            let x = Tensor::<3>::random([batch, seq, d], Distribution::Normal(0.0, 1.0), &device);
            let ours = fused_encoder(&enc, &x).expect("the fused encoder applies on Flex at inference");
            let mask = generate_autoregressive_mask(batch, seq, &device);
            let burns = enc.forward(TransformerEncoderInput::new(x).mask_attn(mask));
            close(ours, burns, &format!("outputs {batch}×{seq}×{d}"));
        }
        let ad = Device::flex().autodiff();
        let enc = TransformerEncoderConfig::new(6, 12, 2, 1).init(&ad);
        assert!(fused_encoder(&enc, &Tensor::<3>::zeros([1, 4, 6], &ad)).is_none(), "autodiff must take burn's ops");
        let pre = TransformerEncoderConfig::new(6, 12, 2, 1).with_norm_first(true).init(&device);
        assert!(fused_encoder(&pre, &Tensor::<3>::zeros([1, 4, 6], &device)).is_none(), "pre-norm is not the kernel's layer");
    }
}
