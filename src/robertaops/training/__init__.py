"""Training: MLM pretraining (pretrain, mlm_data, masking, tokenizer_train), fine-tuning, and the optimiser recipe
they share (optim). Everything here writes HF-layout checkpoints that `ro.load` and transformers read."""
