use super::*;

/// An inner service that records what reached it and answers after
/// `delay`.
#[derive(Clone)]
struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<Method>>>,
    delay: Duration,
}

impl Service<Request<()>> for Recorder {
    type Response = &'static str;
    type Error = BoxError;
    type Future = BoxFuture<Result<&'static str, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        self.seen
            .lock()
            .expect("lock")
            .push(request.method().clone());
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok("done")
        })
    }
}

fn fenced(delay: Duration) -> (Fence, Fenced<Recorder>, Arc<std::sync::Mutex<Vec<Method>>>) {
    let fence = Fence::new();
    let seen = Arc::default();
    let inner = Recorder {
        seen: Arc::clone(&seen),
        delay,
    };
    (fence.clone(), FenceLayer(fence).layer(inner), seen)
}

fn request(method: Method) -> Request<()> {
    Request::builder()
        .method(method)
        .uri("/api/v1/namespaces/a/services/b")
        .body(())
        .expect("request")
}

#[tokio::test]
async fn a_closed_fence_passes_reads_and_refuses_writes_before_sending() {
    let (_fence, mut service, seen) = fenced(Duration::ZERO);
    assert!(service.call(request(Method::GET)).await.is_ok());
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let err = service.call(request(method)).await.expect_err("refused");
        assert!(err.to_string().contains("not the leader"), "{err}");
    }
    assert_eq!(*seen.lock().expect("lock"), vec![Method::GET]);
}

#[tokio::test]
async fn an_open_fence_passes_writes_until_its_deadline() {
    tokio::time::pause();
    let (fence, mut service, seen) = fenced(Duration::ZERO);
    fence.open_until(Instant::now() + Duration::from_secs(2));
    assert!(service.call(request(Method::PATCH)).await.is_ok());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!fence.is_open());
    assert!(service.call(request(Method::PATCH)).await.is_err());
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn writes_in_flight_are_abandoned_when_the_fence_closes() {
    tokio::time::pause();
    let (fence, mut service, _) = fenced(Duration::from_secs(60));
    fence.open_until(Instant::now() + Duration::from_secs(600));
    let write = tokio::spawn(service.call(request(Method::PUT)));
    let read = tokio::spawn(service.call(request(Method::GET)));
    tokio::time::advance(Duration::from_secs(1)).await;
    fence.close();
    let err = write.await.expect("joins").expect_err("abandoned");
    assert!(err.to_string().contains("abandoned"), "{err}");
    // Reads are not fenced: this one completes after its delay.
    assert_eq!(read.await.expect("joins").expect("read"), "done");
}

#[tokio::test]
async fn writes_in_flight_are_abandoned_at_the_deadline_without_any_call() {
    tokio::time::pause();
    let (fence, mut service, _) = fenced(Duration::from_secs(60));
    fence.open_until(Instant::now() + Duration::from_secs(5));
    let started = Instant::now();
    let result = service.call(request(Method::DELETE)).await;
    assert!(result.is_err(), "abandoned at the deadline");
    // Abandoned when the fence expired, not when the write would have
    // completed (the clock is paused: these are logical times).
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}
