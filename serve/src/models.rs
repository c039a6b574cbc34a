//! The four architectures' forward passes in candle, loaded from an export's tensors.

use crate::error::Result;
use crate::layers::{causal_mask, leaky_relu, softmax_last, BatchNorm, CausalConv1d, Conv2d, Gru, LayerNorm, Linear, Lstm};
use crate::weights::Weights;
use candle_core::{Device, Tensor};
use flowcast_contract::spec::{DeepLobSpec, RnnCell, RnnSpec, TransLobSpec};

pub(crate) enum Recurrent {
    Lstm(Lstm),
    Gru(Gru),
}

impl Recurrent {
    fn load(ws: &mut Weights, cell: RnnCell, prefix: &str, d_in: usize, hidden: usize, reverse: bool) -> Result<Self> {
        Ok(match cell {
            RnnCell::Lstm => Recurrent::Lstm(Lstm::load(ws, prefix, d_in, hidden, reverse)?),
            RnnCell::Gru => Recurrent::Gru(Gru::load(ws, prefix, d_in, hidden, reverse)?),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Recurrent::Lstm(m) => m.forward(x),
            Recurrent::Gru(m) => m.forward(x),
        }
    }
}

/// LSTM/GRU classifier (`flowcast_models::rnn`).
pub struct RnnClassifier {
    /// Per layer: the forward recurrence and, when bidirectional, the reverse one.
    pub(crate) layers: Vec<(Recurrent, Option<Recurrent>)>,
    pub(crate) head: Linear,
    pub(crate) hidden: usize,
}

impl RnnClassifier {
    pub fn load(ws: &mut Weights, c: &RnnSpec) -> Result<Self> {
        let dirs = if c.bidirectional { 2 } else { 1 };
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let d_in = if i == 0 { c.d_input } else { c.hidden * dirs };
            let layer = if c.bidirectional {
                (
                    Recurrent::load(ws, c.cell, &format!("layers.{i}.forward"), d_in, c.hidden, false)?,
                    Some(Recurrent::load(ws, c.cell, &format!("layers.{i}.reverse"), d_in, c.hidden, true)?),
                )
            } else {
                (Recurrent::load(ws, c.cell, &format!("layers.{i}"), d_in, c.hidden, false)?, None)
            };
            layers.push(layer);
        }
        let head = Linear::load(ws, "head", c.hidden * dirs, c.n_classes)?;
        Ok(RnnClassifier { layers, head, hidden: c.hidden })
    }

    /// [batch, T, features] → [batch, classes]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (fwd, rev) in &self.layers {
            x = match rev {
                None => fwd.forward(&x)?,
                Some(rev) => Tensor::cat(&[fwd.forward(&x)?, rev.forward(&x)?], 2)?,
            };
        }
        let t = x.dim(1)?;
        let h = self.hidden;
        // Final state of each direction: forward at t = T−1, reverse at t = 0.
        let last = if self.layers.last().is_some_and(|l| l.1.is_some()) {
            let fwd = x.narrow(1, t - 1, 1)?.narrow(2, 0, h)?;
            let rev = x.narrow(1, 0, 1)?.narrow(2, h, h)?;
            Tensor::cat(&[fwd, rev], 2)?.squeeze(1)?
        } else {
            x.narrow(1, t - 1, 1)?.squeeze(1)?
        };
        self.head.forward(&last)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Act {
    Leaky,
    Tanh,
}

/// Convolution → activation → BatchNorm (burn `ConvUnit`).
pub(crate) struct ConvUnit {
    pub(crate) conv: Conv2d,
    pub(crate) bn: BatchNorm,
    pub(crate) act: Act,
}

impl ConvUnit {
    #[allow(clippy::too_many_arguments)]
    fn load(
        ws: &mut Weights,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        act: Act,
    ) -> Result<Self> {
        Ok(ConvUnit {
            conv: Conv2d::load(ws, &format!("{prefix}.conv"), c_in, c_out, kernel, stride, pad)?,
            bn: BatchNorm::load(ws, &format!("{prefix}.bn"), c_out)?,
            act,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        let y = match self.act {
            Act::Leaky => leaky_relu(&y, LEAKY_SLOPE)?,
            Act::Tanh => y.tanh()?,
        };
        self.bn.forward(&y)
    }
}

const LEAKY_SLOPE: f64 = 0.01;

fn run(units: &[ConvUnit], x: &Tensor) -> Result<Tensor> {
    units.iter().try_fold(x.clone(), |x, u| u.forward(&x))
}

/// DeepLOB (`flowcast_models::deeplob`).
pub struct DeepLob {
    pub(crate) conv: Vec<ConvUnit>,
    pub(crate) inp1: Vec<ConvUnit>,
    pub(crate) inp2: Vec<ConvUnit>,
    pub(crate) inp3: Vec<ConvUnit>,
    pub(crate) lstm: Lstm,
    pub(crate) fc1: Linear,
    pub(crate) levels: usize,
}

impl DeepLob {
    pub fn load(ws: &mut Weights, c: &DeepLobSpec) -> Result<Self> {
        let (ch, ci) = (c.conv_channels, c.inception_channels);
        let mut conv = Vec::new();
        for (b, c_in, spatial, stride, act) in
            [(1, 1, [1, 2], [1, 2], Act::Leaky), (2, ch, [1, 2], [1, 2], Act::Tanh), (3, ch, [1, c.levels], [1, 1], Act::Leaky)]
        {
            conv.push(ConvUnit::load(ws, &format!("conv{b}.units.0"), c_in, ch, spatial, stride, [0, 0], act)?);
            for u in 1..3 {
                conv.push(ConvUnit::load(ws, &format!("conv{b}.units.{u}"), ch, ch, [4, 1], [1, 1], [0, 0], act)?);
            }
        }
        let one = [1, 1];
        let inp1 = vec![
            ConvUnit::load(ws, "inp1.0", ch, ci, one, one, [0, 0], Act::Leaky)?,
            ConvUnit::load(ws, "inp1.1", ci, ci, [3, 1], one, [1, 0], Act::Leaky)?,
        ];
        let inp2 = vec![
            ConvUnit::load(ws, "inp2.0", ch, ci, one, one, [0, 0], Act::Leaky)?,
            ConvUnit::load(ws, "inp2.1", ci, ci, [5, 1], one, [2, 0], Act::Leaky)?,
        ];
        let inp3 = vec![ConvUnit::load(ws, "inp3.0", ch, ci, one, one, [0, 0], Act::Leaky)?];
        let lstm = Lstm::load(ws, "lstm", 3 * ci, c.lstm_hidden, false)?;
        let fc1 = Linear::load(ws, "fc1", c.lstm_hidden, c.n_classes)?;
        Ok(DeepLob { conv, inp1, inp2, inp3, lstm, fc1, levels: c.levels })
    }

    /// [batch, T, 4·levels] → [batch, classes]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, f) = x.dims3()?;
        if f != 4 * self.levels || t <= 18 {
            return Err(crate::ServeError::Input(format!("DeepLOB needs [batch, T > 18, {}], got [{b}, {t}, {f}]", 4 * self.levels)));
        }
        let x = x.reshape((b, 1, t, f))?;
        let x = run(&self.conv, &x)?; // [batch, 32, T−18, 1]
        let b1 = run(&self.inp1, &x)?;
        let b2 = run(&self.inp2, &x)?;
        // Max-pool (3,1), stride 1, padding 1 along time: replicating the edge equals −∞ padding.
        let tp = x.dim(2)?;
        let padded = x.pad_with_same(2, 1, 1)?;
        let pooled = padded.narrow(2, 0, tp)?.maximum(&padded.narrow(2, 1, tp)?)?.maximum(&padded.narrow(2, 2, tp)?)?;
        let b3 = run(&self.inp3, &pooled)?;
        let x = Tensor::cat(&[b1, b2, b3], 1)?; // [batch, 192, T', 1]
        let (_, ch, tp, _) = x.dims4()?;
        let x = x.reshape((b, ch, tp))?.transpose(1, 2)?.contiguous()?; // [batch, T', 192]
        let out = self.lstm.forward(&x)?;
        let last = out.narrow(1, tp - 1, 1)?.squeeze(1)?;
        self.fc1.forward(&last)
    }
}

/// burn `MultiHeadAttention` (self-attention, min_float −1e4 masking).
pub(crate) struct Attention {
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) heads: usize,
}

/// burn `TransformerEncoderLayer`, post-norm (norm_first = false).
pub(crate) struct EncoderLayer {
    pub(crate) mha: Attention,
    pub(crate) inner: Linear,
    pub(crate) outer: Linear,
    pub(crate) norm_1: LayerNorm,
    pub(crate) norm_2: LayerNorm,
}

/// burn's `MultiHeadAttentionConfig::min_float`, the value masked scores are set to.
const MIN_FLOAT: f64 = -1.0e4;

impl EncoderLayer {
    fn load(ws: &mut Weights, p: &str, d: usize, d_ff: usize, heads: usize) -> Result<Self> {
        let lin = |ws: &mut Weights, n: &str, i, o| Linear::load(ws, &format!("{p}.{n}"), i, o);
        Ok(EncoderLayer {
            mha: Attention {
                q: lin(ws, "mha.query", d, d)?,
                k: lin(ws, "mha.key", d, d)?,
                v: lin(ws, "mha.value", d, d)?,
                o: lin(ws, "mha.output", d, d)?,
                heads,
            },
            inner: lin(ws, "pwff.linear_inner", d, d_ff)?,
            outer: lin(ws, "pwff.linear_outer", d_ff, d)?,
            norm_1: LayerNorm::load(ws, &format!("{p}.norm_1"), d)?,
            norm_2: LayerNorm::load(ws, &format!("{p}.norm_2"), d)?,
        })
    }

    /// [batch, T, d] → same; `mask` [batch, heads, T, T] u8, 1 = masked.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let a = &self.mha;
        let dk = d / a.heads;
        let split = |l: &Linear| -> Result<Tensor> { Ok(l.forward(x)?.reshape((b, t, a.heads, dk))?.transpose(1, 2)?.contiguous()?) };
        let (q, k, v) = (split(&a.q)?, split(&a.k)?, split(&a.v)?); // [batch, heads, T, dk]
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dk as f64).sqrt())?;
        let fill = Tensor::full(MIN_FLOAT as f32, scores.dims(), scores.device())?;
        let weights = softmax_last(&mask.where_cond(&fill, &scores)?)?;
        let ctx = weights.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, t, d))?;
        let x = self.norm_1.forward(&(x + a.o.forward(&ctx)?)?)?;
        let ff = self.outer.forward(&self.inner.forward(&x)?.gelu_erf()?)?;
        self.norm_2.forward(&(x + ff)?)
    }
}

/// TransLOB-style transformer (`flowcast_models::translob`).
pub struct TransLob {
    pub(crate) convs: Vec<CausalConv1d>,
    pub(crate) norm: LayerNorm,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    pub(crate) window: usize,
    pub(crate) heads: usize,
}

impl TransLob {
    pub fn load(ws: &mut Weights, c: &TransLobSpec) -> Result<Self> {
        let ch = c.conv_channels;
        let convs = (0..c.conv_layers)
            .map(|i| CausalConv1d::load(ws, &format!("convs.{i}"), if i == 0 { c.d_input } else { ch }, ch, c.kernel_size, 1 << i))
            .collect::<Result<_>>()?;
        let norm = LayerNorm::load(ws, "norm", ch)?;
        let d = c.d_model();
        let layers = (0..c.depth)
            .map(|i| EncoderLayer::load(ws, &format!("encoder.layers.{i}"), d, c.d_ff_resolved(), c.heads))
            .collect::<Result<_>>()?;
        let fc1 = Linear::load(ws, "fc1", c.window * d, c.mlp_hidden)?;
        let fc2 = Linear::load(ws, "fc2", c.mlp_hidden, c.n_classes)?;
        Ok(TransLob { convs, norm, layers, fc1, fc2, window: c.window, heads: c.heads })
    }

    /// [batch, window, features] → [batch, classes]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        if t != self.window {
            return Err(crate::ServeError::Input(format!("transformer was exported for windows of {} steps, got {t}", self.window)));
        }
        let dev = x.device();
        let mut h = x.transpose(1, 2)?.contiguous()?; // [batch, features, T]
        for conv in &self.convs {
            h = conv.forward(&h)?.relu()?;
        }
        let h = self.norm.forward(&h.transpose(1, 2)?.contiguous()?)?; // [batch, T, C]
        let pos = position_channel(t, dev)?.broadcast_as((b, t, 1))?;
        let mut h = Tensor::cat(&[h, pos], 2)?; // [batch, T, C+1]
        let mask = causal_mask(t, dev)?.broadcast_as((b, self.heads, t, t))?;
        for layer in &self.layers {
            h = layer.forward(&h, &mask)?;
        }
        let d = h.dim(2)?;
        let h = h.reshape((b, t * d))?;
        let h = self.fc1.forward(&h)?.relu()?;
        self.fc2.forward(&h)
    }
}

/// The time index mapped linearly onto [−1, 1], one channel. [1, T, 1]
fn position_channel(t: usize, dev: &Device) -> Result<Tensor> {
    let denom = (t.max(2) - 1) as f32;
    let pos: Vec<f32> = (0..t).map(|i| -1.0 + 2.0 * i as f32 / denom).collect();
    Ok(Tensor::from_vec(pos, (1, t, 1), dev)?)
}
