//! DeepLOB (Zhang, Zohren & Roberts 2019): convolutions that merge price/size pairs and then
//! sides and levels, an Inception module over time, an LSTM and a linear head — layer for layer
//! the authors' PyTorch reference. docs/models.md § deeplob.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Lstm, LstmConfig, PaddingConfig2d};
use burn::prelude::*;

/// Negative slope of every LeakyReLU in the reference.
const LEAKY_SLOPE: f64 = 0.01;

/// Hyperparameters of DeepLOB. Input columns per time step must be `4 × levels`, ordered per
/// level as (ask price, ask size, bid price, bid size) like FI-2010.
#[derive(Config, Debug)]
pub struct DeepLobConfig {
    /// Book levels per side in the input (10 in the paper; 1 for level-1 data).
    pub levels: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Channels of the three convolution blocks (32 in the paper).
    #[config(default = 32)]
    pub conv_channels: usize,
    /// Channels of each of the three Inception branches (64 in the paper).
    #[config(default = 64)]
    pub inception_channels: usize,
    /// LSTM hidden units (64 in the paper).
    #[config(default = 64)]
    pub lstm_hidden: usize,
}

/// Activation following a convolution in a block (defined beside the fused unit that computes it).
pub use crate::conv_op::ConvAct;

/// Convolution → activation → BatchNorm, the reference's repeating unit.
#[derive(Module, Debug)]
pub struct ConvUnit {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    #[module(skip)]
    pub act: ConvAct,
}

impl ConvUnit {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: PaddingConfig2d,
        act: ConvAct,
        device: &Device,
    ) -> Self {
        ConvUnit {
            conv: Conv2dConfig::new([c_in, c_out], kernel).with_stride(stride).with_padding(padding).init(device),
            bn: BatchNormConfig::new(c_out).init(device),
            act,
        }
    }
    /// [batch, c_in, T, W] → [batch, c_out, T', W']
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // One fused op on the CPU backend, burn's three modules elsewhere (models/src/conv_op.rs).
        crate::conv_op::unit(&self.conv, self.act, LEAKY_SLOPE as f32, &self.bn, x)
    }
}

/// One convolution block: a (1,k) spatial convolution then two (4,1) temporal ones.
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub units: Vec<ConvUnit>,
}

impl ConvBlock {
    fn new(c_in: usize, c: usize, spatial: [usize; 2], stride: [usize; 2], act: ConvAct, device: &Device) -> Self {
        let v = PaddingConfig2d::Valid;
        ConvBlock {
            units: vec![
                ConvUnit::new(c_in, c, spatial, stride, v.clone(), act, device),
                ConvUnit::new(c, c, [4, 1], [1, 1], v.clone(), act, device),
                ConvUnit::new(c, c, [4, 1], [1, 1], v, act, device),
            ],
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.units.iter().fold(x, |x, u| u.forward(x))
    }
}

/// The reference model.
#[derive(Module, Debug)]
pub struct DeepLob {
    /// (1,2) stride (1,2): merges each price with its size.
    pub conv1: ConvBlock,
    /// (1,2) stride (1,2), tanh: merges ask with bid at each level.
    pub conv2: ConvBlock,
    /// (1,levels): merges all levels.
    pub conv3: ConvBlock,
    /// Inception branch 1: 1×1 then (3,1) 'same'.
    pub inp1: Vec<ConvUnit>,
    /// Inception branch 2: 1×1 then (5,1) 'same'.
    pub inp2: Vec<ConvUnit>,
    /// Inception branch 3: (3,1) max-pool stride 1 'same', then 1×1.
    pub inp3_pool: MaxPool2d,
    pub inp3: Vec<ConvUnit>,
    pub lstm: Lstm,
    pub fc1: Linear,
    pub levels: usize,
}

impl DeepLobConfig {
    /// Checks the hyperparameters, so a bad TOML value is an error rather than a panic.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [
            ("levels", self.levels),
            ("conv_channels", self.conv_channels),
            ("inception_channels", self.inception_channels),
            ("lstm_hidden", self.lstm_hidden),
        ] {
            if v == 0 {
                return Err((k, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// Time steps lost to the six unpadded (4,1) convolutions: a window needs more than this.
    pub const TIME_SHRINK: usize = 18;

    pub fn init(&self, device: &Device) -> DeepLob {
        let (c, ci) = (self.conv_channels, self.inception_channels);
        let lr = ConvAct::LeakyRelu;
        let same = |k: usize| PaddingConfig2d::Explicit(k / 2, 0, k / 2, 0);
        DeepLob {
            conv1: ConvBlock::new(1, c, [1, 2], [1, 2], lr, device),
            conv2: ConvBlock::new(c, c, [1, 2], [1, 2], ConvAct::Tanh, device),
            conv3: ConvBlock::new(c, c, [1, self.levels], [1, 1], lr, device),
            inp1: vec![
                ConvUnit::new(c, ci, [1, 1], [1, 1], PaddingConfig2d::Valid, lr, device),
                ConvUnit::new(ci, ci, [3, 1], [1, 1], same(3), lr, device),
            ],
            inp2: vec![
                ConvUnit::new(c, ci, [1, 1], [1, 1], PaddingConfig2d::Valid, lr, device),
                ConvUnit::new(ci, ci, [5, 1], [1, 1], same(5), lr, device),
            ],
            inp3_pool: MaxPool2dConfig::new([3, 1]).with_strides([1, 1]).with_padding(same(3)).init(),
            inp3: vec![ConvUnit::new(c, ci, [1, 1], [1, 1], PaddingConfig2d::Valid, lr, device)],
            lstm: LstmConfig::new(3 * ci, self.lstm_hidden, true).init(device),
            fc1: LinearConfig::new(self.lstm_hidden, self.n_classes).init(device),
            levels: self.levels,
        }
    }
}

impl DeepLob {
    /// [batch, seq, 4·levels] → logits [batch, classes]; needs seq > 18.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, seq, feat] = x.dims();
        assert_eq!(feat, 4 * self.levels, "DeepLOB expects 4 × levels = {} input columns", 4 * self.levels);
        assert!(seq > DeepLobConfig::TIME_SHRINK, "DeepLOB needs a window longer than 18 steps, got {seq}");
        let x = x.unsqueeze_dim::<4>(1); // [batch, 1, T, 4L]
        let x = self.conv1.forward(x); // [batch, 32, T-6, 2L]
        let x = self.conv2.forward(x); // [batch, 32, T-12, L]
        let x = self.conv3.forward(x); // [batch, 32, T-18, 1]
        let b1 = self.inp1.iter().fold(x.clone(), |x, u| u.forward(x)); // [batch, 64, T', 1]
        let b2 = self.inp2.iter().fold(x.clone(), |x, u| u.forward(x)); // [batch, 64, T', 1]
        let b3 = self.inp3.iter().fold(self.inp3_pool.forward(x), |x, u| u.forward(x)); // [batch, 64, T', 1]
        let x = Tensor::cat(vec![b1, b2, b3], 1); // [batch, 192, T', 1]
        let [_, ch, t, _] = x.dims();
        let x = x.reshape([batch, ch, t]).swap_dims(1, 2); // [batch, T', 192]
        let out = crate::rnn_op::lstm(&self.lstm, x); // [batch, T', 64]
        let [_, _, h] = out.dims();
        let last = out.slice(s![.., t - 1, ..]).reshape([batch, h]); // [batch, 64]
        self.fc1.forward(last) // [batch, classes]
    }
}
