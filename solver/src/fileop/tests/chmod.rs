//! `--chmod`: octal and symbolic, on files, directories and created parents.

use super::super::chmod::ModeSpec;
use super::*;

fn chmod_action(src: CopySource, dest: &str, m: &str) -> CopyAction {
    let mut a = action(vec![src], dest);
    a.chmod = Some(m.to_owned());
    a
}

#[test]
fn octal_applies_to_files_and_directories() {
    let f = fx();
    write(&f.ctx, "d/a", "1");
    write(&f.ctx, "d/sub/b", "2");
    f.copy(chmod_action(ctx_src("/d"), "/o/", "0640")).unwrap();
    assert_eq!(mode(&f.d("/o/a")), 0o640);
    assert_eq!(mode(&f.d("/o/sub")), 0o640);
    assert_eq!(mode(&f.d("/o/sub/b")), 0o640);
}

#[test]
fn octal_keeps_special_bits() {
    let f = fx();
    write(&f.ctx, "a", "1");
    f.copy(chmod_action(ctx_src("/a"), "/a", "4755")).unwrap();
    assert_eq!(mode(&f.d("/a")), 0o4755);
}

#[test]
fn octal_mode_is_also_the_mode_of_created_parents() {
    // fsutil 2025: "copy: fix custom chmod for parent directories".
    let f = fx();
    write(&f.ctx, "a", "1");
    f.copy(chmod_action(ctx_src("/a"), "/new/dir/", "0700"))
        .unwrap();
    assert_eq!(mode(&f.d("/new")), 0o700);
    assert_eq!(mode(&f.d("/new/dir")), 0o700);
    assert_eq!(mode(&f.d("/new/dir/a")), 0o700);
}

#[test]
fn symbolic_edits_the_source_mode() {
    let f = fx();
    write(&f.ctx, "d/script", "1");
    write(&f.ctx, "d/data", "2");
    write(&f.ctx, "d/sub/x", "3");
    chmod(&f.ctx.join("d/script"), 0o744);
    chmod(&f.ctx.join("d/data"), 0o666);
    chmod(&f.ctx.join("d/sub"), 0o700);
    f.copy(chmod_action(ctx_src("/d"), "/o/", "go-w,a+X"))
        .unwrap();
    assert_eq!(mode(&f.d("/o/script")), 0o755);
    assert_eq!(mode(&f.d("/o/data")), 0o644);
    assert_eq!(mode(&f.d("/o/sub")), 0o711);
    // Created parents stay 0755 with a symbolic mode.
    assert_eq!(mode(&f.d("/o")), 0o755);
}

#[test]
fn symbolic_mode_table() {
    let cases: &[(&str, u32, bool, u32)] = &[
        ("u+x", 0o644, false, 0o744),
        ("+x", 0o644, false, 0o755),
        ("a+x", 0o644, false, 0o755),
        ("o-r", 0o644, false, 0o640),
        ("g=u", 0o640, false, 0o660),
        ("u=rw,go=r", 0o777, false, 0o644),
        ("a=", 0o4777, false, 0o0),
        ("+X", 0o644, false, 0o644),
        ("+X", 0o644, true, 0o755),
        ("+X", 0o744, false, 0o755),
        ("u+s", 0o755, false, 0o4755),
        ("g+s", 0o755, true, 0o2755),
        ("+t", 0o755, true, 0o1755),
        ("o+t", 0o755, true, 0o755),
        ("u+r-w", 0o200, false, 0o400),
        ("go-rwx", 0o777, false, 0o700),
    ];
    for &(spec, from, is_dir, want) in cases {
        let m = ModeSpec::parse(spec).unwrap();
        assert_eq!(m.apply(from, is_dir), want, "{spec} on {from:o}");
    }
}

#[test]
fn invalid_modes_are_refused() {
    for bad in ["", "8", "10000", "u", "z+x", "u+x,", "u+x+q", "+rwz"] {
        assert!(ModeSpec::parse(bad).is_err(), "{bad:?}");
    }
    let f = fx();
    write(&f.ctx, "a", "1");
    let err = f
        .copy(chmod_action(ctx_src("/a"), "/a", "u+q"))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid chmod parameter: 'u+q'");
}
