use super::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn a_cut_proxy_resets_its_connections_and_refuses_new_ones() {
    let upstream = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in upstream.incoming() {
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start("a", "b", Carries::Replication, up_port).unwrap();
    let echo = |s: &mut TcpStream| -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    };
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    assert_eq!(echo(&mut s).unwrap(), b"ping");
    proxy.set_cut(true);
    assert!(
        echo(&mut s).is_err(),
        "a connection through a cut link must break"
    );
    let mut again = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    assert!(
        echo(&mut again).is_err(),
        "a cut link must refuse new connections"
    );
    proxy.set_cut(false);
    let mut healed = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    assert_eq!(echo(&mut healed).unwrap(), b"ping");
}

#[test]
fn partition_files_are_applied_once_and_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::start(&[("n1", 1), ("n2", 1), ("n3", 1)]).unwrap();
    mesh.reset_files(dir.path()).unwrap();
    assert_eq!(mesh.poll(dir.path()), None);
    let cut_now = |mesh: &Mesh| -> Vec<String> {
        mesh.proxies
            .iter()
            .filter(|p| p.is_cut())
            .map(|p| format!("{}>{} {:?}", p.from, p.to, p.carries))
            .collect()
    };
    // A whole partition: both proxies of every link of n3.
    let want = Partition {
        generation: 1,
        cut: BTreeSet::from(["n3".to_owned()]),
        replication_only: false,
    };
    write_atomically(&request_path(dir.path()), &want).unwrap();
    let line = mesh.poll(dir.path()).unwrap();
    assert!(line.contains("n3 cut off (4 of 6"), "{line}");
    assert!(line.contains("and the daemons' reads"), "{line}");
    let both = |l: &str| [format!("{l} Replication"), format!("{l} Reads")];
    let expected: Vec<String> = ["n1>n3", "n2>n3", "n3>n1", "n3>n2"]
        .into_iter()
        .flat_map(both)
        .collect();
    assert_eq!(cut_now(&mesh), expected);
    assert_eq!(read_partition(&applied_path(dir.path())), Some(want));
    assert_eq!(mesh.poll(dir.path()), None, "applied once");
    // Replication only: the reads proxies are healed, the replication ones stay cut.
    let want = Partition {
        generation: 2,
        cut: BTreeSet::from(["n3".to_owned()]),
        replication_only: true,
    };
    write_atomically(&request_path(dir.path()), &want).unwrap();
    let line = mesh.poll(dir.path()).unwrap();
    assert!(
        line.contains("the daemons still read every engine"),
        "{line}"
    );
    assert_eq!(
        cut_now(&mesh),
        ["n1>n3", "n2>n3", "n3>n1", "n3>n2"].map(|l| format!("{l} Replication"))
    );
}
