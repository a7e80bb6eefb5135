"""Method and tokenizer plugins shipped with sidbench."""
