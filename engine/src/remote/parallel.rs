//! The shape of every large remote transfer (ranged GETs of a fetch, parts
//! of a multipart upload): `count` indexed jobs, at most `parallelism` in
//! flight, on the shard's own executor. The first failure stops the rest
//! from starting and is returned.

use crate::remote::RemoteError;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

pub async fn for_each_index<F, Fut>(count: usize, parallelism: usize, job: F) -> Result<(), RemoteError>
where
    F: Fn(usize) -> Fut + 'static,
    Fut: Future<Output = Result<(), RemoteError>> + 'static,
{
    let next = Rc::new(Cell::new(0usize));
    let job = Rc::new(job);
    let workers: Vec<_> = (0..parallelism.min(count))
        .map(|_| {
            let (next, job) = (next.clone(), job.clone());
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        return Ok(());
                    }
                    next.set(i + 1);
                    if let Err(e) = job(i).await {
                        next.set(count);
                        return Err(e);
                    }
                }
            })
        })
        .collect();
    let mut failure = None;
    for w in workers {
        if let Err(e) = w.await {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}
