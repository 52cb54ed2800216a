"""stark: knowledge distillation with student-friendly sparse teachers (Yang, Zhang, Song, EMNLP 2022)."""

__version__ = "0.1.0"
