//! A DNS server the tests control: authoritative for whatever names the
//! test sets, answering A and AAAA over UDP on a loopback port. The test
//! changes the records while it runs ([`DnsServer::set`]) and can take the
//! server down ([`DnsServer::set_down`]: queries go unanswered, as when a
//! resolver is unreachable). Start the controller with
//! `--dns-server <addr>` to use it.
//!
//! Names only ever resolve to what the test sets: point them at the
//! addresses of the TestHosts the test created.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::Result;

#[derive(Default)]
struct Zone {
    /// Lower-case name without the trailing dot -> (addresses, TTL).
    records: HashMap<String, (Vec<IpAddr>, u32)>,
    down: bool,
    /// Queries answered, per name.
    answered: HashMap<String, u64>,
}

/// A running test DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Listen on a free UDP port of 127.0.0.1.
    pub async fn start() -> Result<DnsServer> {
        let io = |source| crate::Error::Io {
            what: "test DNS server on 127.0.0.1".to_string(),
            source,
        };
        let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(io)?;
        let addr = socket.local_addr().map_err(io)?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let task = tokio::spawn(serve(socket, zone.clone()));
        Ok(DnsServer { addr, zone, task })
    }

    /// Where to send queries (`--dns-server`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` resolves to `addresses` (A for IPv4, AAAA for IPv6) with this
    /// TTL; an empty list makes the name exist with no addresses.
    pub fn set(&self, name: &str, addresses: &[IpAddr], ttl: u32) {
        self.lock()
            .records
            .insert(key(name), (addresses.to_vec(), ttl));
    }

    /// `name` no longer exists (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.lock().records.remove(&key(name));
    }

    /// While down, queries are read and dropped: resolvers time out.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Queries about `name` answered so far.
    pub fn answered(&self, name: &str) -> u64 {
        self.lock().answered.get(&key(name)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let reply = {
            let mut zone = zone.lock().unwrap_or_else(|e| e.into_inner());
            if zone.down {
                continue;
            }
            answer(&buf[..len], &mut zone)
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The reply to one query datagram (`None`: not a query we can parse).
fn answer(datagram: &[u8], zone: &mut Zone) -> Option<Vec<u8>> {
    let request = Message::from_vec(datagram).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.edns = request.edns.clone();
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response.to_vec().ok();
    }
    for query in &request.queries {
        response.add_query(query.clone());
        let name = key(&query.name().to_ascii());
        let Some((addresses, ttl)) = zone.records.get(&name) else {
            response.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        *zone.answered.entry(name).or_default() += 1;
        for address in addresses {
            let rdata = match (query.query_type(), address) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            response.add_answer(Record::from_rdata(query.name().clone(), *ttl, rdata));
        }
    }
    response.to_vec().ok()
}
