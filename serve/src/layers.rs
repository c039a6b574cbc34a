//! candle versions of the burn layers the models use, in inference mode (BatchNorm from its
//! running statistics, no dropout). Each mirrors burn 0.22.1's arithmetic order so logits agree
//! to float rounding. Tensor names and layouts: docs/models.md.

use crate::error::Result;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor, D};

/// burn `Linear`: weight stored `[in, out]` (not PyTorch's `[out, in]`); y = x·W + b.
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn load(ws: &mut Weights, prefix: &str, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Linear { w: ws.take(&format!("{prefix}.weight"), &[d_in, d_out])?, b: Some(ws.take(&format!("{prefix}.bias"), &[d_out])?) })
    }
    /// [.., in] → [.., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.w)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// burn `BatchNorm` at inference: (x − running_mean) / √(running_var + ε) · γ + β over dim 1.
pub struct BatchNorm {
    pub(crate) mean: Tensor,
    pub(crate) inv_std: Tensor,
    pub(crate) gamma: Tensor,
    pub(crate) beta: Tensor,
}

/// burn's BatchNormConfig default ε.
pub const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    pub fn load(ws: &mut Weights, prefix: &str, c: usize) -> Result<Self> {
        let s = [1, c, 1, 1];
        let gamma = ws.take(&format!("{prefix}.gamma"), &[c])?.reshape(&s)?;
        let beta = ws.take(&format!("{prefix}.beta"), &[c])?.reshape(&s)?;
        let mean = ws.take(&format!("{prefix}.running_mean"), &[c])?.reshape(&s)?;
        let var = ws.take(&format!("{prefix}.running_var"), &[c])?.reshape(&s)?;
        let inv_std = (var + BN_EPS)?.sqrt()?;
        Ok(BatchNorm { mean, inv_std, gamma, beta })
    }
    /// [batch, c, h, w] → same
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.mean)?.broadcast_div(&self.inv_std)?.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)?)
    }
}

/// burn `LayerNorm` over the last dimension (biased variance, ε = 1e-5).
pub struct LayerNorm {
    pub(crate) gamma: Tensor,
    pub(crate) beta: Tensor,
}

pub const LN_EPS: f64 = 1e-5;

impl LayerNorm {
    pub fn load(ws: &mut Weights, prefix: &str, d: usize) -> Result<Self> {
        Ok(LayerNorm { gamma: ws.take(&format!("{prefix}.gamma"), &[d])?, beta: ws.take(&format!("{prefix}.beta"), &[d])? })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let y = centered.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)?)
    }
}

pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok((x.relu()? + (x.minimum(0f32)? * slope)?)?)
}

/// Softmax over the last dimension, max-shifted like burn's.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// 2-D convolution with burn's `Conv2d` semantics: weight `[out, in, kh, kw]`, bias `[out]`,
/// per-axis stride and symmetric per-axis zero padding (candle's conv2d takes one stride for
/// both axes, so unequal strides subsample a stride-1 result).
pub struct Conv2d {
    pub(crate) w: Tensor,
    pub(crate) b: Tensor,
    pub(crate) stride: [usize; 2],
    pub(crate) pad: [usize; 2],
}

impl Conv2d {
    pub fn load(
        ws: &mut Weights,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> Result<Self> {
        Ok(Conv2d {
            w: ws.take(&format!("{prefix}.weight"), &[c_out, c_in, kernel[0], kernel[1]])?,
            b: ws.take(&format!("{prefix}.bias"), &[c_out])?.reshape((1, c_out, 1, 1))?,
            stride,
            pad,
        })
    }
    /// [batch, c_in, h, w] → [batch, c_out, h', w']
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        if self.pad[0] > 0 {
            x = x.pad_with_zeros(2, self.pad[0], self.pad[0])?;
        }
        if self.pad[1] > 0 {
            x = x.pad_with_zeros(3, self.pad[1], self.pad[1])?;
        }
        let y = if self.stride[0] == self.stride[1] {
            x.conv2d(&self.w, 0, self.stride[0], 1, 1)?
        } else {
            let mut y = x.conv2d(&self.w, 0, 1, 1, 1)?;
            for (axis, s) in [(2usize, self.stride[0]), (3, self.stride[1])] {
                if s > 1 {
                    let n = y.dim(axis)?;
                    let idx: Vec<u32> = (0..n as u32).step_by(s).collect();
                    let idx = Tensor::from_vec(idx.clone(), idx.len(), y.device())?;
                    y = y.index_select(&idx, axis)?;
                }
            }
            y
        };
        Ok(y.broadcast_add(&self.b)?)
    }
}

/// Causal dilated 1-D convolution (burn `Conv1d` with explicit left padding
/// dilation·(k−1), right 0): weight `[out, in, k]`, bias `[out]`.
pub struct CausalConv1d {
    pub(crate) w: Tensor,
    pub(crate) b: Tensor,
    pub(crate) dilation: usize,
    pub(crate) left: usize,
}

impl CausalConv1d {
    pub fn load(ws: &mut Weights, prefix: &str, c_in: usize, c_out: usize, k: usize, dilation: usize) -> Result<Self> {
        Ok(CausalConv1d {
            w: ws.take(&format!("{prefix}.weight"), &[c_out, c_in, k])?,
            b: ws.take(&format!("{prefix}.bias"), &[c_out])?.reshape((1, c_out, 1))?,
            dilation,
            left: dilation * (k - 1),
        })
    }
    /// [batch, c_in, T] → [batch, c_out, T]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.pad_with_zeros(2, self.left, 0)?;
        Ok(x.conv1d(&self.w, 0, 1, self.dilation, 1)?.broadcast_add(&self.b)?)
    }
}

/// burn `GateController`: `input_transform` and `hidden_transform` Linears of one gate.
pub(crate) struct Gate {
    pub(crate) x: Linear,
    pub(crate) h: Linear,
}

impl Gate {
    fn load(ws: &mut Weights, prefix: &str, d_in: usize, hidden: usize) -> Result<Self> {
        Ok(Gate {
            x: Linear::load(ws, &format!("{prefix}.input_transform"), d_in, hidden)?,
            h: Linear::load(ws, &format!("{prefix}.hidden_transform"), hidden, hidden)?,
        })
    }
}

/// burn `Lstm` (gates input, forget, output, cell; PyTorch's equations), zero initial state,
/// batch-first, optionally running from the last step to the first (the reverse half of `BiLstm`).
pub struct Lstm {
    pub(crate) i: Gate,
    pub(crate) f: Gate,
    pub(crate) o: Gate,
    pub(crate) c: Gate,
    pub(crate) hidden: usize,
    pub(crate) reverse: bool,
}

impl Lstm {
    pub fn load(ws: &mut Weights, prefix: &str, d_in: usize, hidden: usize, reverse: bool) -> Result<Self> {
        Ok(Lstm {
            i: Gate::load(ws, &format!("{prefix}.input_gate"), d_in, hidden)?,
            f: Gate::load(ws, &format!("{prefix}.forget_gate"), d_in, hidden)?,
            o: Gate::load(ws, &format!("{prefix}.output_gate"), d_in, hidden)?,
            c: Gate::load(ws, &format!("{prefix}.cell_gate"), d_in, hidden)?,
            hidden,
            reverse,
        })
    }
    /// [batch, T, d_in] → [batch, T, hidden]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // Input halves of all gates for every step at once: [batch, T, hidden] each.
        let (xi, xf, xo, xc) = (self.i.x.forward(x)?, self.f.x.forward(x)?, self.o.x.forward(x)?, self.c.x.forward(x)?);
        let mut h = Tensor::zeros((b, self.hidden), DType::F32, x.device())?;
        let mut c = h.clone();
        let mut out = vec![h.clone(); t];
        let steps: Box<dyn Iterator<Item = usize>> = if self.reverse { Box::new((0..t).rev()) } else { Box::new(0..t) };
        for s in steps {
            let at = |g: &Tensor| g.narrow(1, s, 1).and_then(|v| v.squeeze(1));
            let ig = sigmoid(&(at(&xi)? + self.i.h.forward(&h)?)?)?;
            let fg = sigmoid(&(at(&xf)? + self.f.h.forward(&h)?)?)?;
            let og = sigmoid(&(at(&xo)? + self.o.h.forward(&h)?)?)?;
            let cg = (at(&xc)? + self.c.h.forward(&h)?)?.tanh()?;
            c = ((fg * c)? + (ig * cg)?)?;
            h = (og * c.tanh()?)?;
            out[s] = h.clone();
        }
        Ok(Tensor::stack(&out, 1)?)
    }
}

/// burn `Gru` with `reset_after = true` (PyTorch's GRU): gates update, reset, new.
pub struct Gru {
    pub(crate) z: Gate,
    pub(crate) r: Gate,
    pub(crate) n: Gate,
    pub(crate) hidden: usize,
    pub(crate) reverse: bool,
}

impl Gru {
    pub fn load(ws: &mut Weights, prefix: &str, d_in: usize, hidden: usize, reverse: bool) -> Result<Self> {
        Ok(Gru {
            z: Gate::load(ws, &format!("{prefix}.update_gate"), d_in, hidden)?,
            r: Gate::load(ws, &format!("{prefix}.reset_gate"), d_in, hidden)?,
            n: Gate::load(ws, &format!("{prefix}.new_gate"), d_in, hidden)?,
            hidden,
            reverse,
        })
    }
    /// [batch, T, d_in] → [batch, T, hidden]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (xz, xr, xn) = (self.z.x.forward(x)?, self.r.x.forward(x)?, self.n.x.forward(x)?);
        let mut h = Tensor::zeros((b, self.hidden), DType::F32, x.device())?;
        let mut out = vec![h.clone(); t];
        let steps: Box<dyn Iterator<Item = usize>> = if self.reverse { Box::new((0..t).rev()) } else { Box::new(0..t) };
        for s in steps {
            let at = |g: &Tensor| g.narrow(1, s, 1).and_then(|v| v.squeeze(1));
            let z = sigmoid(&(at(&xz)? + self.z.h.forward(&h)?)?)?;
            let r = sigmoid(&(at(&xr)? + self.r.h.forward(&h)?)?)?;
            let n = (at(&xn)? + (r * self.n.h.forward(&h)?)?)?.tanh()?;
            // h_t = (1 − z)·n + z·h_{t−1}
            h = ((n * (z.neg()? + 1.0)?)? + (z * h)?)?;
            out[s] = h.clone();
        }
        Ok(Tensor::stack(&out, 1)?)
    }
}

/// Upper-triangular (future) mask [T, T] as u8, 1 where key j > query i.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<u8> = (0..t).flat_map(|i| (0..t).map(move |j| u8::from(j > i))).collect();
    Ok(Tensor::from_vec(m, (t, t), device)?)
}
