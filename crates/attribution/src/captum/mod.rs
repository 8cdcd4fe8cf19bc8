//! Captum's attribution methods, with Captum's semantics (raw, per channel,
//! shaped like the input unless stated otherwise). Each is also a
//! [`crate::Method`] answered by the [`crate::Explainer`] (with these
//! parameters: [`IgParams`], [`NoiseTunnelParams`]).

pub mod grad_cam;
pub mod gradients;
pub mod integrated_gradients;
pub mod noise_tunnel;
pub mod params;
pub mod quadrature;

pub use grad_cam::{guided_grad_cam, guided_grad_cam_product, layer_grad_cam};
pub use gradients::{input_x_gradient, saliency};
pub use integrated_gradients::{integrated_gradients, Baseline, IgOptions};
pub use noise_tunnel::{noise_tunnel, NoiseKind, NoiseTunnelOptions};
pub use params::{IgBaseline, IgParams, NoiseTunnelParams, TunnelledMethod};
pub use quadrature::Integration;
