"""Training the embedded voice: teacher corpus, Tacotron2 training, evaluation, export."""

from pathlib import Path

# LJSpeech's transcripts (ljspeech_{train,val,test}.txt) beside the checkout; --data replaces it
LJSPEECH_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"
