//! The layers that saliency methods probe by default (TorchRay's benchmark choices).

/// Default layer paths for the saliency methods that probe a layer.
///
/// | family | `grad_cam` | `excitation` | `contrast` | `classifier` |
/// |---|---|---|---|---|
/// | VGG | last ReLU of `features` (`features.29` in VGG-16) | next-to-last max pool, the fourth in torchvision's VGGs (`features.23` in VGG-16) | `classifier.4` | `classifier.6` |
/// | ResNet | `layer4` | `layer3` | `avgpool` | `fc` |
/// | AlexNet | `features.11` (last ReLU) | `features.5` (next-to-last max pool, stride 16 like VGG's) | `classifier.5` (last ReLU) | `classifier.6` |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultLayers {
    /// Grad-CAM's saliency layer.
    pub grad_cam: String,
    /// Excitation backprop's saliency layer (also the contrastive variant's).
    pub excitation: String,
    /// Contrastive excitation backprop's contrast layer.
    pub contrast: String,
    /// Contrastive excitation backprop's classifier layer (the last linear layer).
    pub classifier: String,
}
