"""Training losses of the inverter: LPIPS, ArcFace identity, MoCo features and the StyleGAN2 GAN losses.

All networks are defined here in plain PyTorch and read the standard public weight files; nothing is
downloaded. The pretrained networks are frozen and stay in eval mode; gradients flow to the images.
"""

from .adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from .identity import FACE_CROP, IdentitySimilarity, IDLoss, IRSE50FaceNet, face_crop
from .lpips import LPIPS, AlexNetFeatures, LPIPSHeads, VGG16Features
from .moco import MocoLoss, ResNet50Features
from .optional import optional_loss
from .pixel import gradient_loss, l1_loss

__all__ = [
    "FACE_CROP",
    "LPIPS",
    "AlexNetFeatures",
    "IDLoss",
    "IRSE50FaceNet",
    "IdentitySimilarity",
    "LPIPSHeads",
    "MocoLoss",
    "ResNet50Features",
    "VGG16Features",
    "discriminator_loss",
    "face_crop",
    "generator_loss",
    "gradient_loss",
    "l1_loss",
    "optional_loss",
    "path_length_penalty",
    "r1_penalty",
]
