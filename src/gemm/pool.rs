//! A small persistent thread pool whose workers spin between calls.
//!
//! Why a pool of our own (hybridq used rayon before): a layer call on a small problem
//! (1 x 1024 x 1024 is about 20 us of work) cannot afford the ~10 us it takes to wake a parked
//! worker, which is what a work-stealing pool pays when its threads have gone to sleep between
//! calls. XNNPACK's pthreadpool avoids this by
//! letting its workers spin for a while after each call; this pool does the same. After
//! [`SPIN`] without work a worker parks on a condition variable, so an idle process burns no CPU.
//!
//! The contract is deliberately narrow: [`run`] calls `f(t)` exactly once for every task
//! `t < tasks`, on the calling thread and up to `threads - 1` workers, and returns when all calls
//! have returned. Each participant starts on its own contiguous range of the tasks, the same
//! range in every call of the same task and thread counts (so a worker keeps finding its part
//! of the weights in its own L2), and when that is done takes the others' left-over tasks from
//! their far end. Which thread runs which task is therefore not fixed, so callers give every
//! task its own output elements: the output bits never depend on the thread count or on
//! scheduling.
//!
//! One call uses the pool at a time; a call that finds it busy (another thread is in a parallel
//! section) runs its tasks on the calling thread, in order, with the same results. A worker that
//! is not among a call's helpers goes back to waiting without restarting its spin, so small
//! calls on a many-core machine do not keep idle workers spinning.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins, waiting for the next call, before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// Workers above this are never started (the signal word keeps the helper count in its low
/// 16 bits; a few hundred spinning workers would be a poor design anyway).
const MAX_WORKERS: usize = 255;

/// States of a worker's offer slot (the low 2 bits; the job's epoch is above them).
const OFFERED: u64 = 1;
const TAKEN: u64 = 2;
const DONE: u64 = 3;
const REVOKED: u64 = 0;

/// Ranges a job's tasks are cut into, at most: one per participant up to this many.
const RANGES: usize = 8;

/// A value on its own cache lines (128 bytes: the line and its prefetch-pair neighbour), so
/// that one thread spinning on it or claiming from it does not slow writes to its neighbours.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Unclaimed tasks `[front, back)` of one range, as `front << 32 | back`: its home participant
/// claims from the front, the others (once their own ranges are empty) from the back.
struct Range(Padded<AtomicU64>);

impl Range {
    fn new(front: usize, back: usize) -> Self {
        Range(Padded(AtomicU64::new((front as u64) << 32 | back as u64)))
    }

    /// Claims the first unclaimed task (`from_front`) or the last one.
    fn claim(&self, from_front: bool) -> Option<usize> {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (v >> 32, v & 0xffff_ffff);
            if front >= back {
                return None;
            }
            let (next, task) = if from_front {
                ((front + 1) << 32 | back, front)
            } else {
                (front << 32 | (back - 1), back - 1)
            };
            match self
                .0
                .compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(task as usize),
                Err(now) => v = now,
            }
        }
    }
}

/// One parallel call, on the caller's stack: the task function, its tasks cut into one range
/// per participant (participants beyond [`RANGES`] share them), so that a participant of calls
/// with the same task and thread counts gets the same tasks call after call, and with them the
/// same weights in its own caches; and whether a task panicked.
struct Job<'a> {
    /// The task function.
    f: &'a (dyn Fn(usize) + Sync),
    /// Ranges in use (`ranges[..parts]`).
    parts: usize,
    ranges: [Range; RANGES],
    /// The first task panic's payload, re-raised by the caller once every task is done.
    panic: Mutex<Option<Payload>>,
}

/// A panic's payload.
type Payload = Box<dyn std::any::Any + Send>;

impl<'a> Job<'a> {
    /// The job of `tasks` tasks (at most `u32::MAX`) for `participants` threads.
    fn new(f: &'a (dyn Fn(usize) + Sync), tasks: usize, participants: usize) -> Self {
        let parts = participants.clamp(1, RANGES);
        Job {
            f,
            parts,
            ranges: std::array::from_fn(|r| {
                // In u64: `tasks * r` may not fit a 32-bit usize.
                let bound = |r: usize| (tasks as u64 * r.min(parts) as u64 / parts as u64) as usize;
                Range::new(bound(r), bound(r + 1))
            }),
            panic: Mutex::new(None),
        }
    }

    /// Runs tasks until none is left, for participant `me` (the caller is 0, worker `i` is
    /// `i + 1`): its own range first, then the others' from their far end. Records a panic
    /// instead of unwinding.
    fn work(&self, me: usize) {
        let home = me % self.parts;
        for i in 0..self.parts {
            let range = &self.ranges[(home + i) % self.parts];
            while let Some(t) = range.claim(i == 0) {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (self.f)(t))) {
                    let mut first = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                    keep_first(&mut first, payload);
                }
            }
        }
    }
}

/// Keeps the first panic payload and leaks later ones rather than dropping them: a payload
/// whose `Drop` panics must not unwind out of a worker holding a job, or out of `run` while a
/// worker does.
fn keep_first(first: &mut Option<Payload>, payload: Payload) {
    if first.is_none() {
        *first = Some(payload);
    } else {
        std::mem::forget(payload);
    }
}

/// State shared by the caller and the workers.
struct Shared {
    /// `epoch << 16 | helpers`: a new value announces a new job to workers `0..helpers`.
    /// Workers spin on it, so it has its cache lines to itself.
    signal: Padded<AtomicU64>,
    /// Per worker, `epoch << 2 | state`: the caller offers the job (OFFERED); the worker takes
    /// it (TAKEN, after which it may touch the job) and reports DONE; or the caller, having
    /// finished every task itself, revokes an offer the worker has not taken yet (REVOKED), so
    /// that a call never waits for a worker that was slow to wake up.
    slots: Box<[Padded<AtomicU64>]>,
    /// The current job (valid while its call is in `run`; its lifetime is erased, see `run`).
    job: AtomicPtr<Job<'static>>,
    /// Set while a call owns the pool.
    busy: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

struct Pool {
    shared: &'static Shared,
    workers: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = (cores - 1).min(MAX_WORKERS);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            signal: Padded(AtomicU64::new(0)),
            slots: (0..wanted)
                .map(|_| Padded(AtomicU64::new(REVOKED)))
                .collect(),
            job: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }));
        let mut workers = 0;
        for index in 0..wanted {
            let spawned = std::thread::Builder::new()
                .name(format!("hybridq-{index}"))
                .spawn(move || worker(shared, index));
            // A worker that could not be started is simply absent: the caller does its tasks.
            if spawned.is_err() {
                break;
            }
            workers += 1;
        }
        Pool { shared, workers }
    })
}

/// A worker's life: wait for a signal (spinning, then parked); if it is among the signal's
/// helpers, take the offer, do tasks, report DONE.
fn worker(shared: &'static Shared, index: usize) {
    // The value the signal had when the pool was made (the worker may start after the first
    // call has already published its job: it must still see that job as new).
    let mut seen = 0;
    // When this worker was last wanted (it finished work, or found its offer revoked): its
    // spin before parking is counted from here, so signals for calls it is not part of do not
    // restart the spin, while a call that wanted it does, even when it came too late: a worker
    // woken late from parking would otherwise park again at once, come late again to the next
    // short call, and never help.
    let mut idle_since = Instant::now();
    loop {
        let signal = wait_for_signal(shared, seen, idle_since);
        seen = signal;
        if index >= (signal & 0xffff) as usize {
            continue;
        }
        let epoch = signal >> 16;
        let slot = &shared.slots[index];
        if slot
            .compare_exchange(
                epoch << 2 | OFFERED,
                epoch << 2 | TAKEN,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            // Revoked (the caller already did every task), or an offer of an older call.
            idle_since = Instant::now();
            continue;
        }
        // SAFETY: the caller stored a pointer to its live `Job` before offering it, and does
        // not return (so the job stays alive) while this slot says TAKEN: it waits for DONE.
        let job = unsafe { &*shared.job.load(Ordering::Acquire) };
        job.work(index + 1);
        // The last access to `job`.
        slot.store(epoch << 2 | DONE, Ordering::Release);
        idle_since = Instant::now();
    }
}

/// Returns the first signal different from `seen`: spins until [`SPIN`] after `idle_since`,
/// then parks.
fn wait_for_signal(shared: &Shared, seen: u64, idle_since: Instant) -> u64 {
    let mut spins = 0u32;
    loop {
        let s = shared.signal.load(Ordering::Acquire);
        if s != seen {
            return s;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && idle_since.elapsed() > SPIN {
            break;
        }
    }
    let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
    shared.sleepers.fetch_add(1, Ordering::SeqCst);
    let mut s = shared.signal.load(Ordering::SeqCst);
    while s == seen {
        guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        s = shared.signal.load(Ordering::SeqCst);
    }
    shared.sleepers.fetch_sub(1, Ordering::SeqCst);
    s
}

/// Calls `f(t)` once for every `t < tasks`, on the calling thread and up to `threads - 1`
/// pool workers; returns when every call has returned.
///
/// # Panics
/// If a task panics (after all tasks have finished, whichever thread ran them).
pub(crate) fn run(tasks: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    // One participant: no pool (and no worker threads started for it).
    if threads.min(tasks) <= 1 {
        return run_here(tasks, f);
    }
    let p = pool();
    let helpers = threads.min(tasks).saturating_sub(1).min(p.workers);
    let shared = p.shared;
    if helpers == 0
        || u32::try_from(tasks).is_err()
        || shared
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return run_here(tasks, f);
    }
    let job = Job::new(f, tasks, helpers + 1);
    let epoch = ((shared.signal.load(Ordering::Relaxed) >> 16) + 1) & ((1 << 46) - 1);
    // The pointer's lifetime is erased: workers reach `job` (and `f`) through it, and it is
    // sound because this function does not return (nor unwind: the caller's own tasks run under
    // `catch_unwind` in `Job::work`) while any worker holds the job (slot TAKEN).
    shared.job.store(
        (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut(),
        Ordering::Relaxed,
    );
    for slot in &shared.slots[..helpers] {
        slot.store(epoch << 2 | OFFERED, Ordering::Release);
    }
    shared
        .signal
        .store(epoch << 16 | helpers as u64, Ordering::SeqCst);
    if shared.sleepers.load(Ordering::SeqCst) > 0 {
        let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.wake.notify_all();
    }
    job.work(0);
    for slot in &shared.slots[..helpers] {
        let revoked = slot.compare_exchange(
            epoch << 2 | OFFERED,
            epoch << 2 | REVOKED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if revoked.is_ok() {
            continue;
        }
        // Taken: the worker is doing (or has done) tasks it claimed.
        let mut spins = 0u32;
        while slot.load(Ordering::Acquire) != epoch << 2 | DONE {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // On an oversubscribed machine the worker may need this core.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    shared.busy.store(false, Ordering::Release);
    let first = job.panic.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(payload) = first {
        resume_unwind(payload);
    }
}

/// Every task on the calling thread, in order, with [`run`]'s panic contract: all tasks run,
/// then the first task panic (if any) is raised again.
fn run_here(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let mut first = None;
    for t in 0..tasks {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(t))) {
            keep_first(&mut first, payload);
        }
    }
    if let Some(payload) = first {
        resume_unwind(payload);
    }
}

/// A mutable slice that tasks of one [`run`] cut into disjoint chunks.
struct Chunks<T> {
    ptr: *mut T,
    len: usize,
    chunk: usize,
}

// SAFETY: tasks only ever form disjoint sub-slices (`Chunks::get`, one per task index), so
// sharing the pointer is sharing `&mut [T]` pieces across threads, which needs `T: Send`.
unsafe impl<T: Send> Sync for Chunks<T> {}

impl<T> Chunks<T> {
    fn new(data: &mut [T], chunk: usize) -> Self {
        Chunks {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            chunk: chunk.max(1),
        }
    }

    fn count(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    /// Chunk `i`.
    ///
    /// # Safety
    /// `i < self.count()`, and no other live reference to chunk `i` exists (each task index
    /// is handed out once by [`run`]).
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut [T] {
        let start = i * self.chunk;
        let len = self.chunk.min(self.len - start);
        // SAFETY: start + len <= self.len (i < count) within the borrowed slice; exclusive
        // per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Calls `f(i, chunk)` for every chunk of `chunk` elements of `data` (the last may be
/// shorter), spread over up to `threads` threads.
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunks = Chunks::new(data, chunk);
    run(chunks.count(), threads, &|i| {
        // SAFETY: `run` hands out each i < count exactly once.
        f(i, unsafe { chunks.get(i) })
    });
}

/// Calls `f(i, a_chunk, b_chunk, c_chunk)` for the `i`-th chunks of `a` (of `chunk_a`
/// elements), `b` and `c` (of `chunk` elements each), for every `i` below the smallest chunk
/// count, on up to `threads` threads.
pub(crate) fn for_each_chunk_triple<A: Send, B: Send, C: Send>(
    a: &mut [A],
    chunk_a: usize,
    (b, c): (&mut [B], &mut [C]),
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) + Sync,
) {
    let (ca, cb, cc) = (
        Chunks::new(a, chunk_a),
        Chunks::new(b, chunk),
        Chunks::new(c, chunk),
    );
    run(ca.count().min(cb.count()).min(cc.count()), threads, &|i| {
        // SAFETY: `run` hands out each i below every count exactly once.
        f(i, unsafe { ca.get(i) }, unsafe { cb.get(i) }, unsafe {
            cc.get(i)
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        for tasks in [0usize, 1, 2, 3, 7, 64, 1000] {
            for threads in [1usize, 2, 3, 8] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                run(tasks, threads, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn a_participant_takes_its_own_range_first_then_the_others_from_their_end() {
        let order = Mutex::new(Vec::new());
        let f = |t: usize| order.lock().unwrap().push(t);
        let job = Job::new(&f, 10, 3);
        job.work(1);
        // Participant 1 of 3 owns tasks 3..6; then range 2 (6..10) and range 0 (0..3), each
        // from its far end.
        assert_eq!(*order.lock().unwrap(), [3, 4, 5, 9, 8, 7, 6, 2, 1, 0]);
        // More participants than ranges: they share ranges, and every task still runs once.
        let hits: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        let f = |t: usize| {
            hits[t].fetch_add(1, Ordering::Relaxed);
        };
        let job = Job::new(&f, 5, 4 * RANGES);
        for me in 0..4 * RANGES {
            job.work(me);
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        let mut v = vec![0u32; 1001];
        for_each_chunk(&mut v, 64, 4, |i, c| {
            for x in c.iter_mut() {
                *x += i as u32 + 1;
            }
        });
        for (j, &x) in v.iter().enumerate() {
            assert_eq!(x, (j / 64) as u32 + 1);
        }
        let (mut a, mut b, mut c) = (vec![0u8; 10], vec![0u16; 3], vec![0i8; 4]);
        for_each_chunk_triple(&mut a, 4, (&mut b, &mut c), 1, 2, |i, ca, cb, cc| {
            ca.fill(i as u8 + 1);
            cb[0] = ca.len() as u16;
            cc[0] = -(i as i8) - 1;
        });
        assert_eq!(a, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        assert_eq!(b, [4, 4, 2]);
        // Three chunks of `a`: the fourth of `c` is untouched.
        assert_eq!(c, [-1, -2, -3, 0]);
    }

    #[test]
    fn concurrent_callers_and_parked_workers_still_complete() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for round in 0..200 {
                        let sum = AtomicUsize::new(0);
                        run(17, 2, &|t| {
                            sum.fetch_add(t, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 136);
                        if round % 50 == 0 {
                            // Let the workers park, so the next call has to wake them.
                            std::thread::sleep(SPIN * 3);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_is_reported_after_the_others_finish() {
        // threads = 1 runs on the calling thread; 2 and 8 use the pool when it is free (and
        // the calling thread alone when another test holds it): the contract is the same.
        for threads in [1, 2, 8] {
            let done = AtomicUsize::new(0);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                run(8, threads, &|t| {
                    if t == 3 {
                        panic!("task 3");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            }));
            let payload = caught.expect_err("the panic is raised again");
            // The task's own payload, not a generic one.
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 3"));
            assert_eq!(done.load(Ordering::Relaxed), 7, "threads {threads}");
        }
        // The pool is usable afterwards.
        let hits = AtomicUsize::new(0);
        run(5, 2, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 5);
    }
}
