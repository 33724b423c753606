"""course_utils: the tested code behind the notebooks of "Diffusion architectures, built step by step".

One concept per module, in the order the lessons use them: config, checkpoint, data, vae, latents, flow,
train, metrics, viz; receptive_field, embeddings, attention, unet; widgets for the slider explorers.
"""
