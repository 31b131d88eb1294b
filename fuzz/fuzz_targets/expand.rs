//! Fuzzes the shell-word expander: any input, both escape characters, every lexer switch
//! combination picked by the first byte, with a small environment. It must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_parser::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let env = [
        ("A", "a"),
        ("EMPTY", ""),
        ("SPACE", " x  y "),
        ("GLOB", "*?\\*"),
        ("KOREAN", "한국어"),
        ("NL", "a\nb"),
        ("1", "one"),
    ];
    for escape in ['\\', '`'] {
        let mut lexer = Lexer::new(escape);
        lexer.raw_quotes = flags & 1 != 0;
        lexer.raw_escapes = flags & 2 != 0;
        lexer.skip_unset_env = flags & 4 != 0;
        lexer.skip_process_quotes = flags & 8 != 0;
        let single = lexer.process_word(word, &env);
        let split = lexer.process_words(word, &env);
        // Both walk the same input the same way: they fail on the same words.
        assert_eq!(single.is_ok(), split.is_ok());
    }
});
