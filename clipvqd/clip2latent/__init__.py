"""clip2latent (Pinkney & Li 2022), the language-free baseline built on an unconditional StyleGAN2.

config        the six setting blocks (generator sizes/training, pairs, prior network/training, sampling)
generator     the unconditional StyleGAN2: LAFITE's backbone and trainer without a condition
pairs         (w, CLIP image embedding of G(w)) pairs and their z-scoring statistics
schedule      Gaussian diffusion: cosine schedule, forward noising, x0 posterior, respacing
network       the prior transformer (DALLE2-pytorch DiffusionPriorNetwork)
conditioning  embedding noise and classifier-free-guidance dropout
prior         the diffusion prior: loss on z-scored latents, guided few-step sampling
train         resumable prior trainer (EMA, loss curve, safetensors + JSON sidecar)
sample        text embeddings in, uint8 images out
cli           `python -m clipvqd clip2latent ...`

Library modules are imported from their files (clipvqd.clip2latent.prior, ...): this package's
__init__ stays import-free so that `python -m clipvqd` can register the commands without loading torch.
"""
