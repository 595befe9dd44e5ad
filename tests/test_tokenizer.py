from transformers import AutoTokenizer

from ricl.encoders.tokenizer import build_word_tokenizer


def test_word_tokenizer_round_trips_box_answers_and_saves(tmp_path):
    tok = build_word_tokenizer(["Small nodule in the right upper lobe."])
    ids = tok("[[120,348,270,512],[1,2,3,4]]")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "[[120,348,270,512],[1,2,3,4]]"
    assert tok.unk_token_id not in ids  # box syntax never falls out of the vocabulary
    assert tok.convert_ids_to_tokens(ids)[:4] == ["<bos>", "▁", "[", "["]
    assert (
        tok.decode(tok("small nodule in the lobe")["input_ids"], skip_special_tokens=True)
        == "small nodule in the lobe"
    )
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("right upper lobe")["input_ids"] == tok("right upper lobe")["input_ids"]
    assert (again.pad_token_id, again.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
