//! Deterministic random texts for tests that check a fast path against the pest grammar.

/// `count` texts of up to 15 characters drawn from `alphabet`, from a xorshift generator
/// started at `seed`: the same arguments always give the same texts.
pub(crate) fn random_texts(alphabet: &[char], seed: u64, count: usize) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % 16) as usize;
            (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        })
        .collect()
}
