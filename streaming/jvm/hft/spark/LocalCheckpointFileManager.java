package hft.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager;

/**
 * Spark's FileSystem-based checkpoint manager on a private {@link NioLocalFileSystem} for local folders.
 *
 * <p>Spark's default manager for a local folder (FileContext over Hadoop's local file system) forks a
 * {@code readlink} per rename and a {@code chmod} per file without Hadoop's native library: four forks of
 * the JVM per micro-batch, which writes two files (its offsets and its commit). This one still writes each
 * file to a temporary name and renames it into place (a POSIX rename, atomic; the query is the folder's only
 * writer), without a fork and without {@code .crc} sidecars. Other schemes (HDFS, object stores) get the
 * FileSystem-based manager on their usual file system.
 *
 * <p>Use: {@code spark.sql.streaming.checkpointFileManagerClass=hft.spark.LocalCheckpointFileManager}.
 */
public class LocalCheckpointFileManager extends FileSystemBasedCheckpointFileManager {
  public LocalCheckpointFileManager(Path path, Configuration hadoopConf) {
    super(path, nioLocal(hadoopConf));
  }

  private static Configuration nioLocal(Configuration hadoopConf) {
    Configuration conf = new Configuration(hadoopConf);
    conf.setClass("fs.file.impl", NioLocalFileSystem.class, FileSystem.class);
    conf.setBoolean("fs.file.impl.disable.cache", true);  // this manager's own instance, not the shared one
    return conf;
  }
}
