"""ttscli: text to speech from the command line with NVIDIA's Tacotron 2 and WaveGlow."""

__version__ = "0.1.0"
