"""Model layer: config, encoder, heads, checkpoint I/O. Imports only torch, safetensors and numpy."""
