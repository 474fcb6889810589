package yarngateway.toree;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.util.ShutdownHookManager;
import scala.Option;
import scala.runtime.AbstractFunction0;
import scala.runtime.BoxedUnit;

/**
 * Everything the launcher does with Spark, in one class, so that {@link SelfTest} and the protocol
 * classes load without Spark on the class path. Toree's own {@code kernel.sparkSession} calls
 * {@code SparkSession.builder.getOrCreate}, so the session created here is the one the
 * notebook's {@code spark} and {@code sc} name.
 */
final class SparkHooks {
    private SparkHooks() {
    }

    /** Create (or get) the session; returns null and logs when Spark fails to start. */
    static Object createSession() {
        try {
            SparkSession s = SparkSession.builder().getOrCreate();
            ControlServer.log("Spark session ready (application " + s.sparkContext().applicationId() + ")");
            return s;
        } catch (RuntimeException e) {
            ControlServer.log("Spark session failed to start: " + e);
            return null;
        }
    }

    /**
     * Create the session once Toree has configured its REPL (it sets {@code spark.repl.class.outputDir}
     * before binding its sockets; a context created without it cannot ship cell-defined closures).
     */
    static void createSessionForRepl() {
        long deadline = System.currentTimeMillis() + 60_000;
        while (System.getProperty("spark.repl.class.outputDir") == null && System.currentTimeMillis() < deadline) {
            Protocol.sleepQuietly(50);
        }
        createSession();
    }

    /** Eager mode: wait until Toree has created the session. */
    static void awaitSession(long timeoutMs) throws java.io.IOException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (current() == null) {
            if (System.currentTimeMillis() > deadline) {
                throw new java.io.IOException("Toree did not create the Spark session within " + timeoutMs / 1000 + " s");
            }
            Protocol.sleepQuietly(100);
        }
        ControlServer.log("Spark session ready (application " + current().sparkContext().applicationId() + ")");
    }

    private static SparkSession current() {
        Option<SparkSession> s = SparkSession.getDefaultSession();
        if (s.isEmpty()) {
            s = SparkSession.getActiveSession();
        }
        return s.isDefined() ? s.get() : null;
    }

    /** Cancel every running Spark job, if there is a session at all (never creates one). */
    static void cancelAllJobs() {
        try {
            SparkSession s = current();
            if (s != null) {
                s.sparkContext().cancelAllJobs();
            }
        } catch (RuntimeException e) {
            ControlServer.log("cancelAllJobs failed: " + e.getClass().getSimpleName());
        }
    }

    /**
     * Make a clean exit (status 0: Toree's answer to a {@code shutdown_request}, or the launcher's own
     * shutdown) end the YARN application SUCCEEDED. Spark's ApplicationMaster, in a shutdown hook of
     * priority SPARK_CONTEXT_SHUTDOWN_PRIORITY - 1, reports FAILED unless the driver's main method has
     * returned; Toree's own JVM shutdown hook stops the kernel, and then {@code driver} (the thread running
     * the launcher's main) returns. This hook runs before the SparkContext's and the AM's and waits up to
     * {@code waitMs} for that, so the AM records what main's return means: SUCCEEDED. Any other exit
     * status is left alone (FAILED is right for it), and so is an exit called by {@code driver} itself.
     */
    static void reportCleanExitAsSuccess(Thread driver, long waitMs) {
        ShutdownHookManager.addShutdownHook(ShutdownHookManager.SPARK_CONTEXT_SHUTDOWN_PRIORITY() + 1,
                new AbstractFunction0<BoxedUnit>() {
                    @Override
                    public BoxedUnit apply() {
                        Integer status = ExitWatch.exitOfAnotherThread(driver);
                        if (status != null && status == 0 && driver.isAlive()) {
                            try {
                                driver.join(waitMs);
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                            }
                            if (driver.isAlive()) {
                                ControlServer.log("the kernel did not stop within " + waitMs / 1000 + " s of a clean "
                                        + "exit; YARN will report the application FAILED");
                            }
                        }
                        return BoxedUnit.UNIT;
                    }
                });
    }

    /** Stop the session (if any) within {@code timeoutMs}. */
    static void stop(long timeoutMs) {
        SparkSession s = current();
        if (s == null) {
            return;
        }
        Thread t = new Thread(s::stop, "spark-stop");
        t.setDaemon(true);
        t.start();
        try {
            t.join(timeoutMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
