//! The BERT uncased tokenizer: `BertNormalizer` (clean, pad CJK, lowercase, strip accents),
//! `BertPreTokenizer` (whitespace and punctuation splits) and greedy longest-match WordPiece
//! over the model's `vocab.txt`.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::LocalModelError;

/// Token ids of one text, with `[CLS]` first and `[SEP]` last.
#[derive(Debug)]
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
    max_chars_per_word: usize,
}

impl WordPiece {
    /// The tokenizer of `vocab.txt`'s contents (one token a line; its line number is its id).
    pub(crate) fn from_vocab(text: &str) -> Result<Self, LocalModelError> {
        let vocab: HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.trim_end_matches('\r').to_owned(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let id = |t: &str| {
            vocab.get(t).copied().ok_or_else(|| LocalModelError::Format(format!("vocab.txt has no {t} token")))
        };
        Ok(Self { unk: id("[UNK]")?, cls: id("[CLS]")?, sep: id("[SEP]")?, vocab, max_chars_per_word: 100 })
    }

    /// The number of tokens in the vocabulary.
    pub(crate) fn len(&self) -> usize {
        self.vocab.len()
    }

    /// `[CLS] pieces… [SEP]`, at most `max_len` ids (pieces past the limit are dropped).
    pub(crate) fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let room = max_len.saturating_sub(2);
        'words: for word in pre_tokenize(&normalize(text)) {
            for id in self.word_pieces(&word) {
                if ids.len() > room {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    /// Greedy longest-match-first pieces of one word (`##` marks a continuation); a word that
    /// cannot be covered, or is too long, is one `[UNK]`.
    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > self.max_chars_per_word {
            return vec![self.unk];
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let found = loop {
                if end <= start {
                    break None;
                }
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&piece) {
                    break Some(id);
                }
                end -= 1;
            };
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        pieces
    }
}

/// Removes control characters, maps whitespace to spaces, pads CJK ideographs with spaces,
/// lowercases and strips accents (NFD, combining marks dropped).
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            out.push(' ');
        } else if is_cjk(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out.to_lowercase().nfd().filter(|c| !is_combining_mark(*c)).collect()
}

/// Splits on whitespace, and makes every punctuation character a word of its own.
fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for chunk in text.split_whitespace() {
        let mut current = String::new();
        for c in chunk.chars() {
            if is_punctuation(c) {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
                words.push(c.to_string());
            } else {
                current.push(c);
            }
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    words
}

/// BERT's punctuation: every non-alphanumeric ASCII symbol, plus the Unicode general and CJK
/// punctuation blocks (an approximation of the `P*` categories, which std does not expose).
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003 | 0x3008..=0x3011
            | 0x3014..=0x301F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// The CJK ideograph blocks BERT pads with spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> WordPiece {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "hello", ",", "!", "cafe", "的"];
        WordPiece::from_vocab(&vocab.join("\n")).unwrap()
    }

    #[test]
    fn words_split_into_longest_pieces_with_specials_around() {
        let t = tokenizer();
        assert_eq!(t.encode("Unaffable, HELLO!", 16), vec![2, 4, 5, 6, 8, 7, 9, 3]);
    }

    #[test]
    fn accents_are_stripped_cjk_padded_and_unknown_words_are_one_unk() {
        let t = tokenizer();
        assert_eq!(t.encode("Café的xyz", 16), vec![2, 10, 11, 1, 3]);
        assert_eq!(t.encode("unxx hello", 16), vec![2, 1, 7, 3]);
    }

    #[test]
    fn long_inputs_are_cut_to_the_limit_with_sep_kept() {
        let t = tokenizer();
        let ids = t.encode(&"hello ".repeat(50), 6);
        assert_eq!(ids, vec![2, 7, 7, 7, 7, 3]);
    }

    #[test]
    fn a_vocab_without_special_tokens_is_a_format_error() {
        assert!(matches!(WordPiece::from_vocab("a\nb"), Err(LocalModelError::Format(_))));
    }
}
