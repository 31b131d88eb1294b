//! Input for the parse + lower benchmark and the profiling example: a generated Dockerfile,
//! shared so both measure the same text. Not part of the front end's API.

use std::fmt::Write as _;

/// A multi-stage Dockerfile of about `lines` lines in the shapes real files take: ARGs in
/// FROM, ENV and LABEL pairs, long continued RUN lines with comments, COPY --from, heredocs.
pub fn dockerfile(lines: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut stage = 0;
    // Every piece ends with a newline, so lines are newlines; counted incrementally to
    // keep generating linear.
    let (mut counted, mut line_count) = (0, 0);
    loop {
        line_count += s[counted..].matches('\n').count();
        counted = s.len();
        if line_count >= lines {
            break;
        }
        let _ = writeln!(s, "FROM ${{BASE}} AS stage{stage}");
        let _ = writeln!(s, "ARG VERSION=1.{stage}.0");
        let _ = writeln!(
            s,
            "ENV APP_HOME=/opt/app{stage} PATH=/opt/app{stage}/bin:$PATH"
        );
        let _ = writeln!(
            s,
            "LABEL org.example.stage=\"{stage}\" org.example.version=\"${{VERSION}}\""
        );
        let _ = writeln!(s, "WORKDIR $APP_HOME");
        for step in 0..8 {
            let _ = writeln!(s, "RUN set -eux; \\");
            let _ = writeln!(s, "    # step {step} of stage {stage}");
            let _ = writeln!(s, "    echo building {step} > /tmp/log-{step}; \\");
            let _ = writeln!(
                s,
                "    mkdir -p \"$APP_HOME/{step}\" && cp /tmp/log-{step} \"$APP_HOME/{step}/\""
            );
        }
        let _ = writeln!(
            s,
            "RUN --mount=type=cache,target=/root/.cache <<EOF\necho heredoc {stage}\nEOF"
        );
        if stage > 0 {
            let _ = writeln!(
                s,
                "COPY --from=stage{} --chown=1000:1000 /opt/app{} /opt/prev",
                stage - 1,
                stage - 1
            );
        }
        let _ = writeln!(s, "COPY --link src/ ./src/");
        let _ = writeln!(s, "EXPOSE 80{} 9000-9010/udp", stage % 10);
        let _ = writeln!(s, "CMD [\"/opt/app{stage}/bin/run\", \"--port\", \"80\"]");
        stage += 1;
    }
    s
}
