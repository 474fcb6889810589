package yarngateway.toree;

import java.security.Permission;

/**
 * Remembers the first {@code System.exit} this JVM allowed: its status and the thread that called it.
 *
 * <p>Toree installs its {@code KernelSecurityManager} (it refuses {@code System.exit} from notebook code)
 * and leaves the JVM with {@code System.exit(0)} when a Jupyter {@code shutdown_request} arrives. In YARN
 * cluster mode every exit before the driver's main method has returned makes Spark's ApplicationMaster
 * report FAILED ("Shutdown hook called before final status was reported"), so the launcher must know
 * whether an exit was a clean one ({@link SparkHooks#reportCleanExitAsSuccess}). Only a security manager
 * sees the status of {@code System.exit}; this one wraps Toree's, decides nothing and only records.
 */
final class ExitWatch extends SecurityManager {
    private static final Object LOCK = new Object();
    private static Thread exitThread;
    private static int exitStatus;

    private final SecurityManager toree;

    private ExitWatch(SecurityManager toree) {
        this.toree = toree;
    }

    /**
     * Wrap the security manager Toree installed (waiting up to {@code timeoutMs} for it). Returns false,
     * and changes nothing, when there is none: a bare SecurityManager would refuse what Toree allows.
     */
    static boolean install(long timeoutMs) {
        long deadline = System.currentTimeMillis() + timeoutMs;
        SecurityManager current = System.getSecurityManager();
        while (current == null && System.currentTimeMillis() < deadline) {
            Protocol.sleepQuietly(20);
            current = System.getSecurityManager();
        }
        if (current == null) {
            return false;
        }
        if (!(current instanceof ExitWatch)) {
            System.setSecurityManager(new ExitWatch(current));
        }
        return true;
    }

    /** The status of the first exit allowed, if the JVM is exiting and {@code thread} did not call it. */
    static Integer exitOfAnotherThread(Thread thread) {
        synchronized (LOCK) {
            return exitThread == null || exitThread == thread ? null : exitStatus;
        }
    }

    /** Whether an exit was allowed (the JVM is shutting down). */
    static boolean exiting() {
        synchronized (LOCK) {
            return exitThread != null;
        }
    }

    @Override
    public void checkExit(int status) {
        toree.checkExit(status);  // throws for notebook code: then nothing exits
        synchronized (LOCK) {
            if (exitThread == null) {
                exitThread = Thread.currentThread();
                exitStatus = status;
            }
        }
    }

    @Override
    public void checkPermission(Permission perm) {
        toree.checkPermission(perm);
    }

    @Override
    public void checkPermission(Permission perm, Object context) {
        toree.checkPermission(perm, context);
    }
}
