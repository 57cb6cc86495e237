"""Processing role: consume JetStream batches, insert them into storage, isolate refused rows and
dead-letter them."""
