/*
 * Starts one Elasticsearch node in this JVM, for the project's local stack (hft.stack.elasticsearch).
 *
 * Maven Central publishes the Elasticsearch server and its transport-netty4 module, but not the CLI that
 * normally starts it (nor its entitlement agent), so this launcher does the CLI's work in-process:
 *
 *   java --module-path $ES_HOME/lib --add-modules=ALL-MODULE-PATH ... -cp hft-es-launcher.jar \
 *        hft.elasticsearch.HftElasticsearchNode ES_HOME CONFIG_DIR [-Ename=value ...]
 *
 * ES_HOME holds lib/ (the server's jars), modules/transport-netty4/ and plugins/ (infra/setup.sh assembles it
 * in build/elasticsearch); CONFIG_DIR holds elasticsearch.yml and log4j2.properties. The node runs until the
 * JVM is told to stop (SIGTERM/SIGINT): a shutdown hook closes it cleanly, then log4j is shut down.
 * Exit status 1 when the node cannot start (the reason is logged and printed).
 */
package hft.elasticsearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.elasticsearch.cluster.ClusterName;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

public final class HftElasticsearchNode {
    private HftElasticsearchNode() {}

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: HftElasticsearchNode ES_HOME CONFIG_DIR [-Ename=value ...]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath().normalize();
        Path config = Path.of(args[1]).toAbsolutePath().normalize();
        Map<String, String> overrides = new HashMap<>();
        for (int i = 2; i < args.length; i++) {
            String arg = args[i];
            int eq = arg.indexOf('=');
            if (!arg.startsWith("-E") || eq < 3) {
                System.err.println("unexpected argument " + arg + " (want -Ename=value)");
                System.exit(2);
            }
            overrides.put(arg.substring(2, eq), arg.substring(eq + 1));
        }
        for (Path required : new Path[] {home.resolve("lib"), home.resolve("modules"), config.resolve("elasticsearch.yml")}) {
            if (!Files.exists(required)) {
                System.err.println(required + " not found (run `make setup`; hft stack up writes the config)");
                System.exit(2);
            }
        }

        Node node;
        try {
            // What the Elastic CLI and Elasticsearch#initPhase1-3 do, less the entitlement agent and the
            // bootstrap checks (loopback only: they would be skipped anyway).
            LogConfigurator.registerErrorListener();
            LogConfigurator.configureESLogging(); // the server's logging facade, used while the settings load
            Settings input = Settings.builder().put("path.home", home.toString()).build();
            Environment env = InternalSettingsPreparer.prepareEnvironment(input, overrides, config, () -> "hft-es");
            LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));
            LogConfigurator.setClusterName(ClusterName.CLUSTER_NAME_SETTING.get(env.settings()).value());
            LogConfigurator.configure(env, true);
            Files.createDirectories(env.pluginsDir());
            PluginsLoader plugins = PluginsLoader.createPluginsLoader(
                PluginsLoader.loadModulesBundles(env.modulesDir(), false),
                PluginsLoader.loadPluginsBundles(env.pluginsDir(), false),
                Map.of()
            );
            node = new Node(env, plugins);
        } catch (Throwable t) {
            fail("cannot create the Elasticsearch node", t);
            return;
        }

        Logger log = LogManager.getLogger(HftElasticsearchNode.class);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                log.info("stopping the node");
                node.prepareForClose();
                node.close();
                if (!node.awaitClose(20, TimeUnit.SECONDS)) {
                    log.warn("the node did not close within 20s");
                }
            } catch (Throwable t) {
                log.error("error while stopping the node", t);
            } finally {
                stopped.countDown();
                Configurator.shutdown((LoggerContext) LogManager.getContext(false));
            }
        }, "hft-es-shutdown"));

        try {
            node.start();
        } catch (Throwable t) {
            fail("cannot start the Elasticsearch node", t);
            return;
        }
        log.info("node started (home {}, config {})", home, config);
        // The node's threads are daemons: this one keeps the JVM alive until the shutdown hook has run.
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void fail(String what, Throwable t) {
        System.err.println(what + ": " + t);
        t.printStackTrace();
        try {
            LogManager.getLogger(HftElasticsearchNode.class).error(what, t);
        } catch (Throwable ignored) {
            // logging itself failed to start: stderr has it
        }
        Runtime.getRuntime().halt(1);
    }
}
