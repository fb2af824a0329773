"""Exports: a dataset written in the original's folder layout and text format, streaming the corpus.
Token ids <-> the original's spelling (text), tokenizer files for HF tokenizers and LitGPT (tokenizer),
and the writer of the whole folder (writer).

Entry points: writer.write_dataset; text.WordTable / read_token_stream; tokenizer.write_tokenizer.
"""
