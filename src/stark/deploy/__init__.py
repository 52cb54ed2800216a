"""Using and shipping a model: ONNX export and int8 quantisation, prediction on files, inference timing, and the
modeling file that lets stock transformers load uneven widths."""
