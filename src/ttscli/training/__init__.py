"""Training the embedded voice: teacher corpus, Tacotron2 training, evaluation, export."""
