package bench.worker;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Bounds outstanding async sends (max_in_flight). Releases (on client threads) are one atomic
 * decrement; a sender that finds the window full sleeps until a quarter of it is free, so it is
 * woken once per burst rather than once per acknowledgement.
 */
final class Window {
    final int size;
    private final int low;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition freed = lock.newCondition();
    private volatile int waiters;

    Window(int size) {
        this.size = size;
        this.low = size - Math.max(1, size / 4);
    }

    int inFlight() { return inFlight.get(); }

    /** Takes up to want slots (at least one), waiting up to timeoutNs; 0 on timeout. */
    int acquire(int want, long timeoutNs) throws InterruptedException {
        int granted = tryTake(want);
        if (granted > 0) return granted;
        long deadline = System.nanoTime() + timeoutNs;
        lock.lock();
        try {
            waiters++;
            while (inFlight.get() > low) {
                long left = deadline - System.nanoTime();
                if (left <= 0) return 0;
                freed.awaitNanos(left);
            }
        } finally {
            waiters--;
            lock.unlock();
        }
        return tryTake(want);
    }

    private int tryTake(int want) {
        while (true) {
            int cur = inFlight.get();
            int grant = Math.min(want, size - cur);
            if (grant <= 0) return 0;
            if (inFlight.compareAndSet(cur, cur + grant)) return grant;
        }
    }

    void release(int n) {
        int now = inFlight.addAndGet(-n);
        if (waiters > 0 && (now <= low || now == 0)) signal();
    }

    private void signal() {
        lock.lock();
        try {
            freed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Waits until nothing is outstanding; false on timeout. */
    boolean awaitIdle(long timeoutNs) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutNs;
        while (inFlight.get() > 0) {
            if (System.nanoTime() >= deadline) return false;
            Thread.sleep(5);
        }
        return true;
    }
}
