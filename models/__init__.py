"""PyTorch definitions of pixelrt's models: every layer has a full path and a step path."""
from pixelrt.models.gated import GatedPixelCNN, GatedPixelCNNConfig
from pixelrt.models.pixelcnn import PixelCNN, PixelCNNConfig
from pixelrt.models.diagbilstm import DiagBiLSTM, DiagBiLSTMConfig
from pixelrt.models.pixelcnnpp import PixelCNNPP, PixelCNNPPConfig
from pixelrt.models.registry import get_model, model_names, register_model
from pixelrt.models.rowlstm import RowLSTM, RowLSTMConfig
from pixelrt.models.vae import VAE, VAEConfig
from pixelrt.models.multiscale import MultiScale, MultiScaleConfig
from pixelrt.models.pixelvae import PixelVAE, PixelVAEConfig
from pixelrt.models.resgated import ResGatedConfig, ResGatedPixelCNN

register_model("pixelcnn", PixelCNNConfig, "PixelCNN: Mask-A/B convolutions, residual blocks, levels-way softmax")(PixelCNN)
register_model("pixelcnnpp", PixelCNNPPConfig, "PixelCNN++: shifted convs, u/ul streams over 3 resolutions, "
               "discretized logistic mixture")(PixelCNNPP)
register_model("gated", GatedPixelCNNConfig, "Gated PixelCNN: vertical + horizontal gated stacks (no blind spot), "
               "optional label / spatial-map conditioning, levels-way softmax")(GatedPixelCNN)
register_model("vae", VAEConfig, "VAE: conv encoder, Gaussian latent, discretized-logistic or categorical decoder")(VAE)
register_model("rowlstm", RowLSTMConfig, "Row LSTM (PixelRNN): 1 x k masked input-to-state, previous-row state-to-state")(RowLSTM)
register_model("diagbilstm", DiagBiLSTMConfig, "Diagonal BiLSTM (PixelRNN): skewed diagonal LSTM streams, reverse stream per finished row")(DiagBiLSTM)
register_model("multiscale", MultiScaleConfig, "Multi-Scale PixelRNN: Row LSTM on the 2x-coarsened image, then a Row LSTM "
               "on the full image with a deconvolved bias field on every gate")(MultiScale)
register_model("pixelvae", PixelVAEConfig, "PixelVAE: the VAE's encoder and decoder map, a small Gated PixelCNN "
               "conditioned on it as p(x|z)")(PixelVAE)

register_model("resgated", ResGatedConfig, "PixelCNN with gated residual blocks, composed from pixelrt's layers "
               "(CausalSequential): its step path is derived, not written")(ResGatedPixelCNN)

__all__ = ["GatedPixelCNN", "GatedPixelCNNConfig", "PixelCNN", "PixelCNNConfig", "PixelCNNPP", "PixelCNNPPConfig",
           "VAE", "VAEConfig", "get_model",
           "model_names", "register_model"]
