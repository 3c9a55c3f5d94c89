"""Training loops (accelerate): severity encoders, and later the demo prior."""
