"""course_utils: the tested code behind the notebooks of "Diffusion architectures, built step by step".

One concept per module, in the order the data flows: config, checkpoint, data, vae, latents, flow, train, judge,
metrics, viz; the building blocks receptive_field, embeddings, attention, adaln, rope, patchify; the models unet, dit,
mmdit; explorers/ for the slider explorers; retrain, the command that rebuilds the shipped files.
"""
