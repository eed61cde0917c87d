//! Did-you-mean hints: the nearest known word to a mistyped one, for every parser's errors
//! (the segment language, event types at ingest, Segment message types), so one typo gets the
//! same hint wherever it is made.

/// `; did you mean "x"?` for the nearest candidate within edit distance 2 (and nearer than the
/// word's own length, so `a` does not suggest `has`), or nothing. Ties go to the first
/// candidate, so the hint is deterministic.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let len = word.chars().count();
    let best = candidates
        .into_iter()
        .filter(|c| c.chars().count().abs_diff(len) <= 2)
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d <= 2 && d < len)
        .min_by_key(|&(d, _)| d);
    match best {
        Some((_, c)) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

/// The edit distance between two strings, in characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_word_within_two_edits_is_suggested() {
        let words = ["order", "refund", "follow", "unfollow"];
        assert_eq!(did_you_mean("ordr", words), "; did you mean \"order\"?");
        assert_eq!(did_you_mean("folow", words), "; did you mean \"follow\"?");
        assert_eq!(did_you_mean("purchase", words), "");
        assert_eq!(did_you_mean("a", ["as", "has"]), "", "not from one letter");
    }

    #[test]
    fn edit_distance_counts_characters_not_bytes() {
        assert_eq!(levenshtein("好感粉丝", "好感粉"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
