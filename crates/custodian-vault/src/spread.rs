//! Work over many items spread over the machine's cores, when nothing else is using them.
//!
//! A bulk read decrypts thousands of fields, each on its own. With one caller at a time the
//! other cores idle while it does; with many, every core is already busy and splitting a
//! read would only add threads. So a read splits its work only when it is the only
//! operation at work (a count the vault keeps of the operations whose work is running,
//! [`Spread::working`]) and the only one spreading (a count of the runs in flight), and
//! only when there is enough of it to pay for a thread (`MIN_WEIGHT`). The parts run on
//! scoped threads, borrowing what the read holds; their results come back in the items'
//! order, as the work done on one thread.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this much work (records, for a bulk read) a thread costs more than it saves: a
/// record takes about a microsecond to open, a thread tens of them to start.
const MIN_WEIGHT: usize = 512;

/// The most parts a run is split into, however many cores there are.
const MAX_PARTS: usize = 4;

pub(crate) struct Spread {
    running: AtomicUsize,
    /// Operations whose work is running (see [`Spread::working`]).
    working: AtomicUsize,
    cores: usize,
    /// Tests make the system refuse every thread, to see the parts done on the caller's.
    #[cfg(test)]
    refuse_threads: bool,
}

impl Default for Spread {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_cores(cores)
    }
}

/// Counts a run in flight, or an operation at work, until dropped.
pub(crate) struct Running<'s>(&'s AtomicUsize);

impl<'s> Running<'s> {
    fn enter(count: &'s AtomicUsize) -> (Self, usize) {
        let before = count.fetch_add(1, Ordering::AcqRel);
        (Self(count), before)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Spread {
    pub(crate) fn with_cores(cores: usize) -> Self {
        Self {
            running: AtomicUsize::new(0),
            working: AtomicUsize::new(0),
            cores: cores.clamp(1, MAX_PARTS),
            #[cfg(test)]
            refuse_threads: false,
        }
    }

    /// Whether a thread may be asked for at all (always, but in tests that refuse them).
    fn threads_refused(&self) -> bool {
        #[cfg(test)]
        return self.refuse_threads;
        #[cfg(not(test))]
        false
    }

    /// Counts an operation at work until the guard is dropped: the vault holds one around
    /// each data operation's unit of work, so that a read splits only when no other is at
    /// work (under load a split only added a thread and CPU per operation: bench/README.md,
    /// fifteenth session).
    pub(crate) fn working(&self) -> Running<'_> {
        Running::enter(&self.working).0
    }

    /// `work` over `items`, in contiguous parts of about equal `weight` on as many threads
    /// when that is worth it (see the module), else over all of them on this thread. The
    /// results are the parts' in order; the first part (in order) that fails gives the error.
    pub(crate) fn map<T, R, E>(
        &self,
        items: &[T],
        weight: impl Fn(&T) -> usize,
        work: impl Fn(&[T]) -> Result<Vec<R>, E> + Sync,
    ) -> Result<Vec<R>, E>
    where
        T: Sync,
        R: Send,
        E: Send,
    {
        let (_running, spreading) = Running::enter(&self.running);
        // The caller's own operation is one of those at work (none in tests of this alone).
        let alone = spreading == 0 && self.working.load(Ordering::Acquire) <= 1;
        let total: usize = items.iter().map(&weight).sum();
        let parts = self.cores.min(total / MIN_WEIGHT).min(items.len());
        if !alone || parts < 2 {
            return work(items);
        }
        let bounds = split(items, &weight, total, parts);
        let results: Vec<Result<Vec<R>, E>> = std::thread::scope(|s| {
            let work = &work;
            let part = move |w: &[usize]| work(&items[w[0]..w[1]]);
            // A part whose thread the system refuses (out of threads or memory) is done
            // on this thread instead: the read is slower, never failed for it.
            let others: Vec<_> = bounds
                .windows(2)
                .skip(1)
                .map(|w| {
                    let thread = if self.threads_refused() {
                        Err(std::io::Error::other("thread refused"))
                    } else {
                        std::thread::Builder::new().spawn_scoped(s, move || part(w))
                    };
                    (w, thread)
                })
                .collect();
            let mut results = vec![part(&bounds[..2])];
            for (w, thread) in others {
                results.push(match thread {
                    Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    Err(_) => part(w),
                });
            }
            results
        });
        let mut out = Vec::new();
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }
}

/// Where `items` are cut into `parts` runs of about `total / parts` weight each: `parts + 1`
/// increasing bounds from 0 to `items.len()`, no run empty.
fn split<T>(items: &[T], weight: impl Fn(&T) -> usize, total: usize, parts: usize) -> Vec<usize> {
    let mut bounds = vec![0];
    let mut sum = 0;
    for (i, item) in items.iter().enumerate() {
        sum += weight(item);
        let (cut, left) = (bounds.len(), items.len() - (i + 1));
        // At least one item for each part still to come: cut when this part has its share
        // of the weight, or when only as many items are left as parts to fill.
        if cut < parts && left >= parts - cut && (sum * parts >= total * cut || left == parts - cut)
        {
            bounds.push(i + 1);
        }
    }
    bounds.push(items.len());
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    /// Each item's double, noting the threads that did the work.
    fn doubled(
        threads: &Mutex<Vec<ThreadId>>,
    ) -> impl Fn(&[usize]) -> Result<Vec<usize>, String> + Sync + '_ {
        move |part| {
            threads.lock().unwrap().push(std::thread::current().id());
            Ok(part.iter().map(|x| x * 2).collect())
        }
    }

    #[test]
    fn parts_cover_every_item_once_in_order_and_weigh_about_the_same() {
        for (weights, parts) in [
            (vec![1; 10], 2),
            (vec![1; 10], 4),
            (vec![9, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2),
            (vec![1, 1, 1, 100], 3),
            (vec![5, 5], 2),
        ] {
            let total: usize = weights.iter().sum();
            let b = split(&weights, |w| *w, total, parts);
            assert_eq!(
                (b[0], *b.last().unwrap()),
                (0, weights.len()),
                "{weights:?}"
            );
            assert_eq!(b.len(), parts + 1, "{weights:?} in {parts}: {b:?}");
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
        let even = split(&[1; 12], |w| *w, 12, 3);
        assert_eq!(even, [0, 4, 8, 12]);
    }

    #[test]
    fn a_large_run_alone_is_split_over_threads_and_answers_as_one_thread_would() {
        let spread = Spread::with_cores(2);
        let items: Vec<usize> = (0..2000).collect();
        let threads = Mutex::new(Vec::new());
        let got = spread.map(&items, |_| 1, doubled(&threads)).unwrap();
        assert_eq!(got, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        // Which part noted its thread first is a race: the caller's thread did one part.
        let threads = threads.into_inner().unwrap();
        assert_eq!(threads.len(), 2);
        assert_ne!(threads[0], threads[1]);
        assert!(threads.contains(&std::thread::current().id()));
    }

    #[test]
    fn small_runs_runs_beside_another_and_single_cores_stay_on_the_callers_thread() {
        let items: Vec<usize> = (0..2000).collect();
        let one_thread = |spread: &Spread, items: &[usize]| {
            let threads = Mutex::new(Vec::new());
            let got = spread.map(items, |_| 1, doubled(&threads)).unwrap();
            assert_eq!(got.len(), items.len());
            assert_eq!(threads.into_inner().unwrap(), [std::thread::current().id()]);
        };
        one_thread(&Spread::with_cores(2), &items[..MIN_WEIGHT * 2 - 1]);
        one_thread(&Spread::with_cores(1), &items);
        // Another run in flight: this one does not spread.
        let spread = Spread::with_cores(4);
        let other = Running::enter(&spread.running);
        one_thread(&spread, &items);
        drop(other);
        assert_eq!(spread.running.load(Ordering::Acquire), 0);
        // Another operation at work beside the caller's: no split either; the caller's
        // alone still splits.
        let mine = spread.working();
        let theirs = spread.working();
        one_thread(&spread, &items);
        drop(theirs);
        let threads = Mutex::new(Vec::new());
        spread.map(&items, |_| 1, doubled(&threads)).unwrap();
        assert_eq!(threads.into_inner().unwrap().len(), 3);
        drop(mine);
        assert_eq!(spread.working.load(Ordering::Acquire), 0);
    }

    /// When the system refuses the threads, every part runs on the caller's thread, in
    /// order, and the answer is the same; the run is no longer in flight afterwards.
    #[test]
    fn parts_whose_threads_are_refused_run_on_the_callers_thread() {
        let mut spread = Spread::with_cores(4);
        spread.refuse_threads = true;
        let items: Vec<usize> = (0..4000).collect();
        let threads = Mutex::new(Vec::new());
        let got = spread.map(&items, |_| 1, doubled(&threads)).unwrap();
        assert_eq!(got, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let threads = threads.into_inner().unwrap();
        // Split in four parts all the same, each done here.
        assert_eq!(threads, [std::thread::current().id(); 4]);
        assert_eq!(spread.running.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_first_failing_part_in_order_gives_the_error() {
        let spread = Spread::with_cores(4);
        let items: Vec<usize> = (0..4000).collect();
        let r = spread.map(
            &items,
            |_| 1,
            |part| {
                if part.contains(&1500) || part.contains(&3500) {
                    Err(format!("part from {}", part[0]))
                } else {
                    Ok(part.to_vec())
                }
            },
        );
        assert_eq!(r, Err("part from 1000".to_owned()));
    }
}
