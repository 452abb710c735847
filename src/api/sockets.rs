//! The listener's dealings with the operating system: the file limit the connection cap
//! must fit, and the 503 sent to a connection shed without reading its request.

/// What a connection refused at the cap is sent, without its request being read;
/// written once.
static REFUSED: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = r#"{"error":{"code":"overloaded","message":"too many open connections to this daemon; retry in a second"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Descriptors kept for what is not an API connection: the engine and peer connections,
/// S3, log files, journals.
const OTHER_FILES: u64 = 256;

/// The connection cap the process's file limit allows: the soft limit is raised toward
/// the hard one when the cap needs it (as systemd's default 1024 would not allow the
/// cap and everything else); if it still does not fit, the cap is lowered, and the log
/// says so. A daemon out of descriptors stops accepting, which is what the cap prevents.
pub fn fit_file_limit(max: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return max;
    }
    let want = max as u64 + OTHER_FILES;
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur >= want {
        return max;
    }
    let fitted = lim.rlim_cur.saturating_sub(OTHER_FILES).max(8) as usize;
    tracing::warn!(
        max_connections = max,
        file_limit = lim.rlim_cur,
        "api.max_connections does not fit the file limit; at most {fitted} connections will be open (raise LimitNOFILE)"
    );
    fitted
}

/// Sends the 503 to a connection about to be closed, without waiting: whatever the
/// client already sent is read and dropped first, so that closing does not reset the
/// connection before the answer is read. A client that does not read gets nothing.
pub fn shed(fd: std::os::fd::RawFd) {
    let mut scratch = [0u8; 4096];
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call;
    // both calls are non-blocking and touch only the buffers given.
    unsafe {
        libc::recv(
            fd,
            scratch.as_mut_ptr().cast(),
            scratch.len(),
            libc::MSG_DONTWAIT,
        );
        let answer = &*REFUSED;
        libc::send(
            fd,
            answer.as_ptr().cast(),
            answer.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
}
