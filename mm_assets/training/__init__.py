"""Training: contrastive fine-tuning of CLIP encoders on labelled image-caption pairs."""
